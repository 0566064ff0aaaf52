"""certfleet rotate — key → CSR → sign → push → activate → verify → clean up, where due."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import typer

from cli.options import Common, fleet_options
from cli.runtime import execute, finish, guarded, open_journal, select
from fleet.durations import format_duration, parse_duration
from fleet.errors import InputError
from fleet.pki.keys import KeyFactory
from fleet.pki.signers.factory import SIGNERS, SignerSpec, build_signer, parse_command
from fleet.plans.rotate import Rotate, check_journal_passphrase
from fleet.secrets import Secret, parse_secret_ref
from fleet.xapi.commands import PURPOSES

DEFAULT_JOURNAL_PASSPHRASE = "env:CERTFLEET_JOURNAL_PASSPHRASE"


def parse_purposes(text: str) -> tuple[str, ...]:
    by_lower = {p.lower(): p for p in PURPOSES}
    out: list[str] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        purpose = by_lower.get(item.lower())
        if purpose is None:
            raise InputError(f"--purpose {item!r} is not one of {', '.join(PURPOSES)}")
        if purpose not in out:
            out.append(purpose)
    if not out:
        raise InputError("--purpose is empty")
    return tuple(out)


def journal_passphrase(ref: str) -> Secret:
    try:
        return parse_secret_ref(ref).resolve_passphrase()
    except InputError as exc:
        raise InputError(
            f"the journal keeps every new private key encrypted and needs a passphrase: {exc}"
        ) from exc


def run_rotate(
    common: Common,
    *,
    purposes: tuple[str, ...],
    spec: SignerSpec,
    renew_before: dt.timedelta,
    force: bool,
    passphrase_ref: str,
    resumed_from: str | None = None,
    override_profile: bool = False,
) -> None:
    spec.validate()
    _, devices = select(common)
    passphrase = journal_passphrase(passphrase_ref)
    with open_journal(common) as journal:
        check_journal_passphrase(journal, passphrase, [d.name for d in devices], purposes)
    keys = KeyFactory()
    holder: dict[str, Any] = {}

    async def before() -> None:
        signer, anchors = await build_signer(spec)
        plan.signer = signer
        plan.anchors = anchors
        holder["signer"] = signer

    async def after() -> None:
        signer = holder.get("signer")
        closer = getattr(signer, "aclose", None)
        if closer is not None:
            await closer()

    plan = Rotate(purposes=purposes, signer=_Unbuilt(), keys=keys,
                  journal_passphrase=passphrase, renew_before=renew_before, force=force,
                  override_profile=override_profile)
    try:
        run = execute(
            plan, devices, common, before=before, after=after, resumed_from=resumed_from,
            journal_args={
                "purposes": list(purposes),
                "signer": spec.to_json(),
                "renew_before": format_duration(renew_before),
                "force": force,
                "override_profile": override_profile,
                "journal_passphrase": passphrase_ref,
            },
        )
    finally:
        keys.close()
    finish(run, common)


class _Unbuilt:
    """Placeholder until the signer is built inside the run's event loop."""

    name = "unbuilt"

    async def sign(self, request: Any) -> Any:
        raise AssertionError("signer not built")


@guarded
@fleet_options(changes=True)
def rotate(
    purpose: str = typer.Option(..., "--purpose", help="Comma list: HTTPS, SIP, 802.1X, Audit, …"),
    signer: str = typer.Option(..., "--signer", help=f"One of {', '.join(SIGNERS)}."),
    renew_before: str = typer.Option(
        "30d", "--renew-before", help="Rotate certificates expiring within this (e.g. 30d)."
    ),
    force: bool = typer.Option(False, "--force", help="Rotate even where not due."),
    override_profile: bool = typer.Option(
        False, "--override-profile",
        help="Rotate even certificates a device renews itself under a SCEP profile.",
    ),
    days: int = typer.Option(365, "--days", min=1, help="Validity asked of the signer."),
    ca_dir: Path | None = typer.Option(None, "--ca-dir", help="local-ca: the CA folder."),
    ca_passphrase: str | None = typer.Option(
        "env:CERTFLEET_CA_PASSPHRASE", "--ca-passphrase",
        help="local-ca: reference to the CA key passphrase (env:, keyring:, file:).",
    ),
    outbox: Path | None = typer.Option(None, "--outbox", help="files: where CSRs are written."),
    inbox: Path | None = typer.Option(None, "--inbox", help="files: where signed certs are found."),
    sign_command: str | None = typer.Option(
        None, "--sign-command", help="command: program + args; CSR on stdin, PEM chain on stdout."
    ),
    command_timeout: float = typer.Option(60.0, "--command-timeout", min=1.0),
    scep_url: str | None = typer.Option(None, "--scep-url", help="scep: the SCEP server URL."),
    scep_ca_fingerprint: str | None = typer.Option(
        None, "--scep-ca-fingerprint", help="scep: SHA-256 (or SHA-1) of the SCEP CA certificate."
    ),
    scep_challenge: str | None = typer.Option(
        None, "--scep-challenge", help="scep: reference to the challenge password."
    ),
    journal_passphrase_ref: str = typer.Option(
        DEFAULT_JOURNAL_PASSPHRASE, "--journal-passphrase",
        help="Reference to the passphrase that encrypts new keys in the journal.",
    ),
    *,
    common: Common,
) -> None:
    """Rotate the certificates for --purpose on every device where they are due."""
    spec = SignerSpec(
        kind=signer,
        days=days,
        ca_dir=str(ca_dir.resolve()) if ca_dir else None,
        ca_passphrase=ca_passphrase if signer == "local-ca" else None,
        outbox=str(outbox.resolve()) if outbox else None,
        inbox=str(inbox.resolve()) if inbox else None,
        command=parse_command(sign_command) if sign_command else (),
        command_timeout=command_timeout,
        scep_url=scep_url,
        scep_ca_fingerprint=scep_ca_fingerprint,
        scep_challenge=scep_challenge,
    )
    run_rotate(common, purposes=parse_purposes(purpose), spec=spec,
               renew_before=parse_duration(renew_before), force=force,
               passphrase_ref=journal_passphrase_ref, override_profile=override_profile)
