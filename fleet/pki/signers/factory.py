"""fleet.pki.signers.factory — ``--signer`` options to a signer, and back (for the journal).

A :class:`SignerSpec` holds only references to secrets (``env:``, ``keyring:``, ``file:``),
never secrets, so it can be stored with a run and used again by ``runs resume``.
"""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from ...errors import InputError
from ...masking import mask_url_userinfo
from ...secrets import Secret, parse_secret_ref
from .base import Signer

__all__ = ["SIGNERS", "SignerSpec", "build_signer", "check_scep_options"]

SIGNERS = ("local-ca", "files", "command", "scep")


@dataclass(frozen=True)
class SignerSpec:
    kind: str
    days: int = 365
    ca_dir: str | None = None
    ca_passphrase: str | None = None  # a secret reference
    outbox: str | None = None
    inbox: str | None = None
    command: tuple[str, ...] = field(default_factory=tuple)
    command_timeout: float = 60.0
    scep_url: str | None = None
    scep_ca_fingerprint: str | None = None
    scep_challenge: str | None = None  # a secret reference

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["command"] = list(self.command)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SignerSpec:
        data = dict(data)
        data["command"] = tuple(data.get("command") or ())
        return cls(**data)

    def validate(self) -> None:
        if self.kind not in SIGNERS:
            raise InputError(f"--signer must be one of {', '.join(SIGNERS)}, not {self.kind!r}")
        needs: dict[str, list[tuple[str, object]]] = {
            "local-ca": [("--ca-dir", self.ca_dir), ("--ca-passphrase", self.ca_passphrase)],
            "files": [("--outbox", self.outbox), ("--inbox", self.inbox)],
            "command": [("--sign-command", self.command)],
            "scep": [("--scep-url", self.scep_url),
                     ("--scep-ca-fingerprint", self.scep_ca_fingerprint)],
        }
        missing = [name for name, value in needs[self.kind] if not value]
        if missing:
            raise InputError(f"--signer {self.kind} needs {' and '.join(missing)}")
        if self.kind == "scep":
            assert self.scep_url and self.scep_ca_fingerprint
            check_scep_options(self.scep_url, self.scep_ca_fingerprint,
                               url_option="--scep-url",
                               fingerprint_option="--scep-ca-fingerprint")
        for option, ref in (("--ca-passphrase", self.ca_passphrase),
                            ("--scep-challenge", self.scep_challenge)):
            if ref:
                _check_ref(option, ref)


def _check_ref(option: str, ref: str) -> None:
    """A well-formed secret reference given with ``option``; InputError naming the option."""
    try:
        parse_secret_ref(ref)
    except InputError as exc:
        raise InputError(f"{option}: {exc}") from None


def _resolve(option: str, ref: str) -> Secret:
    """The secret a reference given with ``option`` names; InputError naming the option."""
    try:
        return parse_secret_ref(ref).resolve()
    except InputError as exc:
        raise InputError(f"{option}: {exc}") from None


def check_scep_options(
    url: str, fingerprint: str, *, url_option: str, fingerprint_option: str
) -> None:
    """A SCEP server URL (http/https with a host) and a CA fingerprint, checked before anything
    is sent anywhere: InputError naming the option (the URL shown without its userinfo)."""
    import httpx

    from ...fingerprints import CA_DIGEST_LENGTHS, normalize_fingerprint

    shown = mask_url_userinfo(url)
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise InputError(f"{url_option} {shown!r} is not a URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InputError(
            f"{url_option} {shown!r}: a SCEP server URL is http:// or https:// with a host, "
            "e.g. http://ca.example.com:8080/scep"
        )
    try:
        normalize_fingerprint(fingerprint, lengths=CA_DIGEST_LENGTHS)
    except ValueError as exc:
        raise InputError(f"{fingerprint_option}: {exc}") from None


async def build_signer(spec: SignerSpec) -> tuple[Signer, tuple[x509.Certificate, ...]]:
    """The signer and the CA certificates its chains must verify to."""
    spec.validate()
    if spec.kind == "local-ca":
        from ..local_ca import load_local_ca
        from .local_ca import LocalCaSigner

        assert spec.ca_dir and spec.ca_passphrase
        ca = load_local_ca(Path(spec.ca_dir), _resolve("--ca-passphrase", spec.ca_passphrase))
        return LocalCaSigner(ca, days=spec.days), (ca.cert,)
    if spec.kind == "files":
        from .files import FilesSigner

        assert spec.outbox and spec.inbox
        return FilesSigner(Path(spec.outbox), Path(spec.inbox)), ()
    if spec.kind == "command":
        from .command import CommandSigner

        return CommandSigner(list(spec.command), timeout=spec.command_timeout), ()
    from ..scep import ScepClient
    from .scep import ScepSigner

    assert spec.scep_url and spec.scep_ca_fingerprint
    challenge = _resolve("--scep-challenge", spec.scep_challenge) if spec.scep_challenge else None
    client = ScepClient(spec.scep_url, ca_fingerprint=spec.scep_ca_fingerprint)
    try:
        info = await client.get_ca()
    finally:
        await client.aclose()
    signer = ScepSigner(spec.scep_url, ca_fingerprint=spec.scep_ca_fingerprint,
                        challenge=challenge)
    return signer, (info.ca,)


def parse_command(text: str) -> tuple[str, ...]:
    try:
        argv = tuple(shlex.split(text))
    except ValueError as exc:
        raise InputError(f"--sign-command: {exc}") from exc
    if not argv:
        raise InputError("--sign-command is empty")
    return argv
