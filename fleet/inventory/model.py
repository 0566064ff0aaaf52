"""fleet.inventory.model — a loaded inventory: devices, groups, how a device's TLS identity is
checked (:class:`Verify`), and the settings' vocabulary."""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from ..errors import InputError
from ..fingerprints import normalize_fingerprint
from ..secrets import SecretRef
from .checks import _ca_file_problem
from .select import Recorded, select_devices
from .template import CertificateTemplate

TRANSPORTS: Final = ("local", "cloud", "websocket")
VERIFY_FORMS: Final = "ca:PATH, pin:sha256:<64 hex digits>, system or insecure"

VerifyMode = Literal["ca", "pin", "system", "insecure"]
_VERIFY_MODES: Final = ("ca", "pin", "system", "insecure")
DEFAULT_API_URL: Final = "https://webexapis.com"
#: requests a minute one Webex token may send when api_rate_per_minute is not set: under the
#: documented ~300/min, with room for other clients of the same user
DEFAULT_API_RATE_PER_MINUTE: Final = 280.0
#: a sanity bound for api_rate_per_minute (Webex documents ~300; a typo should not unleash)
MAX_API_RATE_PER_MINUTE: Final = 100_000


@dataclass(frozen=True)
class Verify:
    """How a device's TLS identity is checked."""

    mode: VerifyMode
    ca_path: Path | None = None  # absolute; relative paths resolve against the inventory folder
    pin_sha256: str | None = None  # 64 lowercase hex characters, separators removed

    def __post_init__(self) -> None:
        if self.mode not in _VERIFY_MODES:
            raise InputError(f"unknown verify mode {self.mode!r}; use one of: {VERIFY_FORMS}")
        if self.mode == "ca":
            if self.ca_path is None:
                raise InputError("verify ca: needs the path of a CA certificate file")
            if not self.ca_path.is_absolute():
                object.__setattr__(self, "ca_path", self.ca_path.absolute())
        elif self.ca_path is not None:
            raise InputError(f"verify {self.mode} takes no CA path")
        if self.mode == "pin":
            try:
                pin = normalize_fingerprint(self.pin_sha256 or "", lengths=(64,))
            except ValueError as exc:
                raise InputError(f"verify pin:sha256: {exc}") from None
            object.__setattr__(self, "pin_sha256", pin)
        elif self.pin_sha256 is not None:
            raise InputError(f"verify {self.mode} takes no pin")

    def __str__(self) -> str:
        if self.mode == "ca":
            return f"ca:{self.ca_path}"
        if self.mode == "pin":
            return f"pin:sha256:{self.pin_sha256}"
        return self.mode

    @property
    def insecure(self) -> bool:
        """True when the device's TLS identity is not checked at all."""
        return self.mode == "insecure"


@dataclass(frozen=True)
class Device:
    """One device, with every inherited setting merged in."""

    name: str
    host: str | None = None
    port: int = 443
    transport: str = "local"  # "local" | "cloud" | "websocket"
    username: str | None = None
    password: SecretRef | None = None
    token: SecretRef | None = None  # for cloud (bearer token)
    device_id: str | None = None  # cloud device id
    verify: Verify = Verify("system")
    groups: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()  # own + groups' + defaults' tags, de-duplicated, sorted
    timezone: str | None = None
    certificate: CertificateTemplate = field(default_factory=CertificateTemplate)
    source: str = ""  # "path/to/file.yaml:LINE" where the device is defined
    #: the Webex cloud API (transport: cloud): base URL and how its TLS is verified
    api_url: str = DEFAULT_API_URL
    api_verify: Verify = Verify("system")
    #: requests a minute the run may send with this device's token (None: the built-in
    #: default, under Webex's documented ~300/min); devices sharing a token share one pacer
    api_rate_per_minute: float | None = None

    @property
    def address(self) -> str | None:
        """``host:port`` (IPv6 hosts in brackets), or None for a device without a host."""
        if self.host is None:
            return None
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class Group:
    """A group as declared in the inventory, and the devices that joined it."""

    name: str
    tags: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()  # in inventory order
    source: str = ""


@dataclass
class Inventory:
    """A loaded, valid inventory."""

    path: Path
    devices: dict[str, Device]  # in file order
    groups: dict[str, Group] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def known_tags(self) -> list[str]:
        return sorted({tag for device in self.devices.values() for tag in device.tags})

    def select(
        self,
        limits: Sequence[str] | None = None,
        *,
        named_sets: Mapping[str, Collection[str]] | None = None,
        known: Mapping[str, Recorded] | None = None,
    ) -> list[Device]:
        """The devices ``--limit`` terms select, in inventory order (see
        :mod:`fleet.inventory.select`: names, globs, ``tag:x``, ``group:y``, ``@set``,
        ``firmware:<11.27``, ``product:NAME``, any of them prefixed with ``!`` to exclude).
        ``named_sets`` holds the ``@set`` members (e.g. ``@failed``), ``known`` the release and
        product last read from each device. SelectionError for a malformed term, a term that
        matches no device, and an empty result.
        """
        return select_devices(self, limits, named_sets=named_sets, known=known)


def parse_verify(
    text: str, *, base_dir: str | Path | None = None, check_file: bool = True
) -> Verify:
    """Parse ``ca:PATH``, ``pin:sha256:HEX``, ``system`` or ``insecure`` (InputError otherwise).

    A relative CA path resolves against ``base_dir`` (the current directory if None); with
    ``check_file`` the file must exist and hold a PEM certificate.
    """
    value = text.strip()
    if value == "system":
        return Verify("system")
    if value == "insecure":
        return Verify("insecure")
    if value.startswith("ca:"):
        raw = value[3:].strip()
        if not raw:
            raise InputError(
                "verify ca: needs the path of a CA certificate file, e.g. ca:certs/device-ca.pem"
            )
        path = Path(os.path.expanduser(raw))
        if not path.is_absolute():
            path = (Path(base_dir) if base_dir is not None else Path.cwd()) / path
        path = Path(os.path.normpath(path.absolute()))
        if check_file:
            problem = _ca_file_problem(path)
            if problem:
                raise InputError(problem)
        return Verify("ca", ca_path=path)
    if value.lower().startswith("pin:"):
        algorithm, colon, digest = value[4:].partition(":")
        if not colon or algorithm.strip().lower() != "sha256":
            raise InputError(
                "verify pin: must be pin:sha256:<64 hex digits>, the SHA-256 fingerprint of "
                "the device's certificate"
            )
        return Verify("pin", pin_sha256=digest)
    raise InputError(f"unknown verify form {text!r}; use one of: {VERIFY_FORMS}")
