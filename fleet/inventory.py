"""fleet.inventory — load, validate and select from YAML inventories of RoomOS devices.

An inventory has three top-level sections::

    defaults:   settings every device starts from
    groups:     named sets of settings (and tags) that devices join with ``groups: [...]``
    devices:    one entry per device, in the order the fleet is worked through

Settings merge in this order: defaults, then each group in the order the device lists them, then
the device's own keys. ``tags`` accumulate (union); ``certificate`` merges key by key, and its
``subject`` RDN by RDN. Everything is checked in one pass: :func:`load_inventory` raises a single
:class:`~fleet.errors.InventoryError` whose ``problems`` holds every problem found, each located
at file, line and key path (``devices.room-1.pasword``).

The inventory never holds a secret: ``password`` and ``token`` are references
(``env:VAR``, ``keyring:SERVICE/USER``, ``file:PATH``, see :mod:`fleet.secrets`), resolved only
when a device is contacted.

:meth:`Inventory.select` implements ``--limit``: names, globs, ``tag:x``, ``group:y``, ``@set``
(for instance ``@failed``, the devices that failed in the last run) and ``!`` to exclude.
"""

from __future__ import annotations

import difflib
import fnmatch
import gc
import ipaddress
import os
import re
import string
import zoneinfo
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Final, Literal

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from fleet.errors import InputError, InventoryError, SecretError, SelectionError
from fleet.files import read_file
from fleet.secrets import SecretRef, parse_secret_ref
from fleet.selectors import Recorded, firmware_test, no_record_hint, product_test

try:
    from yaml import CSafeLoader as _YamlLoader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as _YamlLoader  # type: ignore[assignment]

__all__ = [
    "DEFAULT_API_URL",
    "KEY_TYPES",
    "PLACEHOLDERS",
    "SUBJECT_KEYS",
    "TRANSPORTS",
    "CertificateTemplate",
    "Device",
    "FrozenMapping",
    "Group",
    "Inventory",
    "RenderedCertificate",
    "Verify",
    "VerifyMode",
    "load_inventory",
    "parse_verify",
]

TRANSPORTS: Final = ("local", "cloud", "websocket")
KEY_TYPES: Final = ("rsa-2048", "rsa-3072", "rsa-4096", "ec-p256", "ec-p384")
#: subject RDNs, in the order they appear in a rendered subject
SUBJECT_KEYS: Final = ("C", "ST", "L", "O", "OU", "CN")
#: the placeholders a certificate template may use (``{site}`` is an alias of ``{group}``)
PLACEHOLDERS: Final = ("name", "host", "port", "group", "site")
VERIFY_FORMS: Final = "ca:PATH, pin:sha256:<64 hex digits>, system or insecure"

VerifyMode = Literal["ca", "pin", "system", "insecure"]
_VERIFY_MODES: Final = ("ca", "pin", "system", "insecure")

_TOP_KEYS: Final = ("defaults", "groups", "devices")
DEFAULT_API_URL: Final = "https://webexapis.com"
#: requests a minute one Webex token may send when api_rate_per_minute is not set: under the
#: documented ~300/min, with room for other clients of the same user
DEFAULT_API_RATE_PER_MINUTE: Final = 280.0
#: a sanity bound for api_rate_per_minute (Webex documents ~300; a typo should not unleash)
MAX_API_RATE_PER_MINUTE: Final = 100_000
_COMMON_KEYS: Final = (
    "transport",
    "username",
    "password",
    "token",
    "verify",
    "certificate",
    "tags",
    "timezone",
    "port",
    "api_url",
    "api_verify",
    "api_rate_per_minute",
)
_DEVICE_ONLY_KEYS: Final = ("host", "device_id", "groups")
_DEVICE_KEYS: Final = _COMMON_KEYS + _DEVICE_ONLY_KEYS
_CERT_KEYS: Final = ("key", "subject", "san_dns", "san_ip", "san_email", "san_uri")
_SAN_KINDS: Final = ("san_dns", "san_ip", "san_email", "san_uri")
#: RFC 5280 upper bounds
_SUBJECT_MAX: Final = {"C": 2, "ST": 128, "L": 128, "O": 64, "OU": 64, "CN": 64}

_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_NAME_RULE: Final = (
    "must start with a letter or digit and contain only letters, digits, '.', '_', '-'"
)
_TAG_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/+-]*")
_HOST_LABEL_RE: Final = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
_DNS_LABEL_RE: Final = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_EMAIL_RE: Final = re.compile(r"[^@\s]+@[^@\s]+")
_URI_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S+")
_HEX64_RE: Final = re.compile(r"[0-9a-f]{64}")
_GLOB_CHARS: Final = frozenset("*?[")

_T_STR: Final = "tag:yaml.org,2002:str"
_T_INT: Final = "tag:yaml.org,2002:int"
_T_FLOAT: Final = "tag:yaml.org,2002:float"
_T_NULL: Final = "tag:yaml.org,2002:null"
_T_BOOL: Final = "tag:yaml.org,2002:bool"
_T_MERGE: Final = "tag:yaml.org,2002:merge"
_T_MAP: Final = "tag:yaml.org,2002:map"
_T_SEQ: Final = "tag:yaml.org,2002:seq"
#: scalar tags whose text is taken as written (so ``C: NO`` stays "NO", ``username: 1234`` "1234")
_TEXT_TAGS: Final = frozenset(
    {
        _T_STR,
        _T_INT,
        _T_BOOL,
        "tag:yaml.org,2002:float",
        "tag:yaml.org,2002:timestamp",
    }
)
#: deeper than this is not an inventory (and libyaml's composer recurses on the C stack)
_MAX_DEPTH: Final = 32
#: ``<<`` merge keys: how many mappings one merge may reach through merges of merges; and how
#: many mapping entries and list items the whole file may expand to, counting every use of an
#: alias (a base plus one per byte of text: without aliases a file is smaller than that; every
#: ordinary use of an alias costs bytes, a "merge bomb" of ``<<: [*a, *a, ...]`` or a long
#: list used by every device does not)
_MAX_MERGE_DEPTH: Final = 32
_BUDGET_BASE: Final = 100_000
_MAX_CA_FILE: Final = 16 * 1024 * 1024


# --------------------------------------------------------------------------- data model


class FrozenMapping(Mapping[str, str]):
    """An immutable, hashable ``str -> str`` mapping that keeps insertion order."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        self._data: dict[str, str] = dict(data)

    def __getitem__(self, key: str) -> str:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(tuple(self._data.items()))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return dict(self._data) == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrozenMapping({self._data!r})"


@dataclass(frozen=True)
class Verify:
    """How a device's TLS identity is checked."""

    mode: VerifyMode
    ca_path: Path | None = None  # absolute; relative paths resolve against the inventory folder
    pin_sha256: str | None = None  # 64 lowercase hex characters, colons removed

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
            pin = (self.pin_sha256 or "").replace(":", "").strip().lower()
            if not _HEX64_RE.fullmatch(pin):
                raise InputError(
                    "verify pin:sha256: needs the 64 hex digits of a SHA-256 fingerprint "
                    f"(colons allowed), not {len(pin)} characters"
                    if pin and all(c in "0123456789abcdef" for c in pin)
                    else "verify pin:sha256: needs 64 hex digits (0-9, a-f; colons allowed)"
                )
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
class RenderedCertificate:
    """A certificate template with every placeholder filled in for one device."""

    subject: tuple[tuple[str, str], ...]  # in the order C, ST, L, O, OU, CN
    san_dns: tuple[str, ...] = ()
    san_ip: tuple[str, ...] = ()
    san_email: tuple[str, ...] = ()
    san_uri: tuple[str, ...] = ()
    key: str = "rsa-2048"

    @property
    def common_name(self) -> str:
        return dict(self.subject).get("CN", "")


def _default_subject() -> Mapping[str, str]:
    return FrozenMapping({"CN": "{name}"})


@dataclass(frozen=True)
class CertificateTemplate:
    """What a device certificate should look like; strings may hold placeholders."""

    key: str = "rsa-2048"  # rsa-2048 | rsa-3072 | rsa-4096 | ec-p256 | ec-p384
    subject: Mapping[str, str] = field(default_factory=_default_subject)
    san_dns: tuple[str, ...] = ()
    san_ip: tuple[str, ...] = ()
    san_email: tuple[str, ...] = ()
    san_uri: tuple[str, ...] = ()
    #: when no SAN is given at all (the inventory names none, not even an empty list), the
    #: device's host goes in the SAN as written: a DNS name as san_dns, an IP as san_ip. A
    #: certificate without a SAN is unfit for HTTPS (TLS clients ignore the CN).
    host_san: bool = True

    def __post_init__(self) -> None:
        if self.key not in KEY_TYPES:
            raise InputError(f"unknown key type {self.key!r}; use one of: {', '.join(KEY_TYPES)}")
        unknown = [k for k in self.subject if k not in SUBJECT_KEYS]
        if unknown:
            raise InputError(
                f"unknown subject attribute {unknown[0]!r}; use {', '.join(SUBJECT_KEYS)}"
            )
        subject: dict[str, str] = {}
        for rdn in SUBJECT_KEYS:
            value = self.subject.get(rdn, "{name}" if rdn == "CN" else None)
            if value is None:
                continue
            problem = _subject_problem(rdn, value)
            if problem:
                raise InputError(problem)
            subject[rdn] = value.upper() if rdn == "C" and "{" not in value else value
        object.__setattr__(self, "subject", FrozenMapping(subject))
        for kind in _SAN_KINDS:
            values = tuple(getattr(self, kind))
            for value in values:
                problem = _san_problem(kind, value)
                if problem:
                    raise InputError(problem)
            object.__setattr__(self, kind, values)
        if any(getattr(self, kind) for kind in _SAN_KINDS):
            object.__setattr__(self, "host_san", False)  # moot: one template, one meaning

    def render(self, device: Device) -> RenderedCertificate:
        """Fill the placeholders from ``device``; InputError (naming it) if the result is bad."""
        group = device.groups[0] if device.groups else None
        values: dict[str, str | None] = {
            "name": device.name,
            "host": device.host,
            "port": str(device.port),
            "group": group,
            "site": group,
        }

        def fill(text: str, what: str) -> str:
            fields, problem = _parse_template(text)
            if problem:
                raise InputError(f"{device.name}: certificate {what}: {problem}")
            for name in fields:
                if values[name] is None:
                    lacking = "host" if name == "host" else "group"
                    raise InputError(
                        f"{device.name}: certificate {what} {text!r} uses {{{name}}} "
                        f"but the device has no {lacking}"
                    )
            return text.format_map(values)

        subject: list[tuple[str, str]] = []
        for rdn in SUBJECT_KEYS:
            if rdn in self.subject:
                value = fill(self.subject[rdn], f"subject {rdn}")
                if rdn == "C":
                    value = value.upper()
                problem = _subject_problem(rdn, value, rendered=True)
                if problem:
                    raise InputError(f"{device.name}: certificate {problem}")
                subject.append((rdn, value))
        sans: dict[str, tuple[str, ...]] = {}
        for kind in _SAN_KINDS:
            out: dict[str, None] = {}
            for template in getattr(self, kind):
                value = fill(template, kind)
                problem = _san_problem(kind, value, rendered=True)
                if problem:
                    raise InputError(f"{device.name}: certificate {problem}")
                if kind == "san_ip":
                    value = str(ipaddress.ip_address(value))
                out[value] = None
            sans[kind] = tuple(out)
        if self.host_san and not any(sans.values()) and device.host:
            if _is_ip(device.host):
                sans["san_ip"] = (str(ipaddress.ip_address(device.host)),)
            elif _san_problem("san_dns", device.host, rendered=True) is None:
                sans["san_dns"] = (device.host,)
        return RenderedCertificate(
            subject=tuple(subject),
            san_dns=sans["san_dns"],
            san_ip=sans["san_ip"],
            san_email=sans["san_email"],
            san_uri=sans["san_uri"],
            key=self.key,
        )


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
        """The devices ``--limit`` terms select, in inventory order.

        Each item of ``limits`` may hold several comma-separated terms: a device name, a glob
        (``room-0*``, case-sensitive), ``tag:x``, ``group:y``, ``@set`` (looked up in
        ``named_sets``, e.g. ``@failed``), ``firmware:<11.27`` or ``product:NAME`` (matched
        against ``known``, the release and product last read from each device, see
        :mod:`fleet.selectors`), any of them prefixed with ``!`` to exclude. The result
        is the union of the positive terms (all devices when there are none) minus the union of
        the excluded ones. A malformed term, a term that matches no device, and an empty result
        are :class:`SelectionError`.
        """
        if isinstance(limits, str):  # one --limit given as a plain string
            limits = [limits]
        terms: list[str] = []
        for chunk in limits or ():
            for piece in chunk.split(","):
                term = piece.strip()
                if not term:
                    raise SelectionError(
                        f"--limit {chunk!r} has an empty term "
                        "(look for a doubled or trailing comma)"
                    )
                terms.append(term)
        include: set[str] = set()
        exclude: set[str] = set()
        any_positive = False
        for term in terms:
            negate = term.startswith("!")
            body = term[1:].strip() if negate else term
            if not body or body.startswith("!"):
                raise SelectionError(
                    f"--limit term {term!r} is malformed: write !NAME, !GLOB, !tag:X, !group:Y "
                    "or !@SET to exclude devices"
                )
            matched = self._match(body, term, named_sets, known)
            if negate:
                exclude |= matched
            else:
                include |= matched
                any_positive = True
        chosen: Collection[str] = include if any_positive else self.devices.keys()
        result = [d for n, d in self.devices.items() if n in chosen and n not in exclude]
        if not result:
            spec = " ".join(limits) if limits else "(none)"
            why = " (everything it matches is excluded)" if exclude else ""
            raise SelectionError(f"--limit {spec} selects no device{why}")
        return result

    def _match(
        self, body: str, term: str, named_sets: Mapping[str, Collection[str]] | None,
        known: Mapping[str, Recorded] | None = None,
    ) -> set[str]:
        if body.startswith("@"):
            return self._match_set(body[1:], term, named_sets)
        prefix, colon, value = body.partition(":")
        if colon:
            if prefix not in ("tag", "group", "firmware", "product"):
                raise SelectionError(
                    f"--limit term {term!r}: unknown prefix '{prefix}:'; use a device name or "
                    "glob, tag:X, group:Y, firmware:VERSION, product:NAME or @SET, each "
                    "optionally prefixed with !"
                )
            value = value.strip()
            if not value:
                raise SelectionError(f"--limit term {term!r} needs a value after '{prefix}:'")
            if prefix == "tag":
                return self._match_tag(value, term)
            if prefix in ("firmware", "product"):
                return self._match_recorded(prefix, value, term, known or {})
            return self._match_group(value, term)
        if _GLOB_CHARS.intersection(body):
            found = {name for name in self.devices if fnmatch.fnmatchcase(name, body)}
            if not found:
                raise SelectionError(f"--limit term {term!r} matches no device")
            return found
        if body not in self.devices:
            raise SelectionError(
                f"--limit term {term!r}: no device named {body!r}"
                + _did_you_mean(body, self.devices)
            )
        return {body}

    def _match_set(
        self, set_name: str, term: str, named_sets: Mapping[str, Collection[str]] | None
    ) -> set[str]:
        if not set_name:
            raise SelectionError(f"--limit term {term!r} needs a set name, e.g. @failed")
        if not named_sets:
            raise SelectionError(
                f"--limit term {term!r}: there is no previous run to take @{set_name} from"
            )
        if set_name not in named_sets:
            available = ", ".join(f"@{name}" for name in sorted(named_sets))
            raise SelectionError(
                f"--limit term {term!r}: unknown set @{set_name}; available: {available}"
            )
        members = named_sets[set_name]
        found = {name for name in members if name in self.devices}
        if not found:
            why = "the set is empty" if not members else "none of its devices is in this inventory"
            raise SelectionError(f"--limit term {term!r} matches no device ({why})")
        return found

    def _match_tag(self, value: str, term: str) -> set[str]:
        glob = bool(_GLOB_CHARS.intersection(value))
        found = {
            name
            for name, device in self.devices.items()
            if any(
                (fnmatch.fnmatchcase(tag, value) if glob else tag == value) for tag in device.tags
            )
        }
        if not found:
            raise SelectionError(
                f"--limit term {term!r} matches no device; known tags: {_listing(self.known_tags)}"
            )
        return found

    def _match_recorded(self, prefix: str, value: str, term: str,
                        known: Mapping[str, Recorded]) -> set[str]:
        test = (firmware_test if prefix == "firmware" else product_test)(value, term)
        found = {name for name in self.devices if test(known.get(name))}
        field = "version" if prefix == "firmware" else "product"
        unrecorded = [n for n in self.devices if not getattr(known.get(n), field, None)]
        hint = no_record_hint(len(unrecorded), prefix) if unrecorded else ""
        if hint and hint not in self.warnings:
            self.warnings.append(hint)
        if not found:
            raise SelectionError(f"--limit term {term!r} matches no device"
                                 + (f"; {hint}" if hint else ""))
        return found

    def _match_group(self, value: str, term: str) -> set[str]:
        known = sorted(set(self.groups) | {g for d in self.devices.values() for g in d.groups})
        if _GLOB_CHARS.intersection(value):
            wanted = {g for g in known if fnmatch.fnmatchcase(g, value)}
        elif value in known:
            wanted = {value}
        else:
            raise SelectionError(
                f"--limit term {term!r}: unknown group {value!r}{_did_you_mean(value, known)}; "
                f"known groups: {_listing(known)}"
            )
        found = {
            name for name, device in self.devices.items() if wanted.intersection(device.groups)
        }
        if not found:
            raise SelectionError(
                f"--limit term {term!r} matches no device; known groups: {_listing(known)}"
            )
        return found


# ------------------------------------------------------------------------ validation helpers


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


def _ca_file_problem(path: Path) -> str | None:
    try:
        data = read_file(path, limit=_MAX_CA_FILE)
    except FileNotFoundError:
        return f"CA file {path} does not exist"
    except IsADirectoryError:
        return f"CA file {path} is a directory"
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return f"cannot read CA file {path}: {reason}"
    if b"-----BEGIN CERTIFICATE-----" not in data:
        return f"CA file {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
    try:
        from cryptography import x509

        x509.load_pem_x509_certificates(data)
    except Exception:
        return f"CA file {path} holds a PEM certificate block that does not parse"
    return None


@lru_cache(maxsize=4096)
def _parse_template(text: str) -> tuple[tuple[str, ...], str | None]:
    """(placeholder names used, problem or None)."""
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        return (), (
            f"template {text!r} has unbalanced braces ({exc}); "
            "write {{ and }} for literal braces"
        )
    fields: list[str] = []
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in PLACEHOLDERS:
            shown = "{" + name + "}"
            return (), (
                f"template {text!r} uses unknown placeholder {shown}; use "
                + ", ".join("{" + p + "}" for p in PLACEHOLDERS)
            )
        if spec or conversion:
            return (), f"template {text!r}: write plain {{{name}}}, without a format or conversion"
        fields.append(name)
    return tuple(fields), None


def _subject_problem(rdn: str, value: str, *, rendered: bool = False) -> str | None:
    if not rendered:
        problem = _parse_template(value)[1]
        if problem:
            return f"subject {rdn}: {problem}"
        if "{" in value:
            return None  # checked again once rendered
        value = value.replace("}}", "}")
    if not value.strip():
        return f"subject {rdn} is empty"
    if rdn == "C" and not (len(value) == 2 and value.isascii() and value.isalpha()):
        return f"subject C must be a two-letter country code such as NO or SE, not {value!r}"
    if len(value) > _SUBJECT_MAX[rdn]:
        return f"subject {rdn} is longer than {_SUBJECT_MAX[rdn]} characters: {value!r}"
    return None


def _san_problem(kind: str, value: str, *, rendered: bool = False) -> str | None:
    if not rendered:
        problem = _parse_template(value)[1]
        if problem:
            return f"{kind}: {problem}"
        if "{" in value:
            return None  # checked again once rendered
        value = value.replace("}}", "}")
    if kind == "san_ip":
        try:
            ipaddress.ip_address(value)
        except ValueError:
            return f"san_ip {value!r} is not an IP address"
    elif kind == "san_dns":
        if _is_ip(value):
            return f"san_dns {value!r} is an IP address: put it in san_ip"
        if not _is_dns_name(value, wildcard=True):
            return (
                f"san_dns {value!r} is not a DNS name (letters, digits and '-' in dot-separated "
                "labels; '*.' allowed first)"
            )
    elif kind == "san_email":
        if not _EMAIL_RE.fullmatch(value):
            return f"san_email {value!r} is not an e-mail address"
    elif not _URI_RE.fullmatch(value):
        return f"san_uri {value!r} is not a URI (it needs a scheme, e.g. https:// or urn:)"
    return None


def _is_dns_name(
    value: str, *, wildcard: bool = False, label: re.Pattern[str] = _DNS_LABEL_RE
) -> bool:
    name = value[:-1] if value.endswith(".") else value
    if wildcard and name.startswith("*."):
        name = name[2:]
    if not name or len(name) > 253:
        return False
    return all(label.fullmatch(part) for part in name.split("."))


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _host_problem(host: str) -> str | None:
    if "://" in host or "/" in host:
        return f"host {host!r} must be a host name or IP address, not a URL"
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(bare)
    except ValueError:
        pass
    else:
        if bare != host:
            return f"host {host!r}: write the IPv6 address without brackets"
        return None
    if re.fullmatch(r"[^:]+:[0-9]+", host):
        return f"host {host!r}: put the port in port:, not in host"
    if not _is_dns_name(host, label=_HOST_LABEL_RE):
        return f"host {host!r} is not a valid host name or IP address"
    return None


@lru_cache(maxsize=1024)
def _timezone_problem(name: str) -> str | None:
    try:
        zoneinfo.ZoneInfo(name)
    except Exception:  # ZoneInfoNotFoundError, ValueError, OSError for odd keys
        hint = _did_you_mean(name, zoneinfo.available_timezones())
        return f"unknown timezone {name!r}{hint} (IANA names such as Europe/Oslo)"
    return None


@lru_cache(maxsize=4096)
def _key_hint(key: str, allowed: tuple[str, ...]) -> tuple[str, str | None]:
    """For an unknown key: the "did you mean" text and the key it probably meant. Cached: an
    alias used by many devices repeats the same unknown keys many times."""
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    return _did_you_mean(key, allowed), close[0] if close else None


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    pool = list(choices)
    by_case = {c.lower(): c for c in pool}
    if word.lower() in by_case and by_case[word.lower()] != word:
        return f" (did you mean {by_case[word.lower()]!r}?)"
    close = difflib.get_close_matches(word, pool, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _listing(items: Sequence[str], limit: int = 30) -> str:
    if not items:
        return "(none)"
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown}, … ({len(items) - limit} more)"


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


def _kind(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == _T_NULL:
        return "nothing"
    if node.tag in (_T_INT, _T_FLOAT):
        return "a number"
    if node.tag == _T_BOOL:
        return "true/false"
    return "text"


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == _T_NULL


# ------------------------------------------------------------------------------- loading


@dataclass(slots=True)
class _CertLayer:
    key: str | None = None
    subject: dict[str, str] = field(default_factory=dict)
    san_dns: tuple[str, ...] | None = None
    san_ip: tuple[str, ...] | None = None
    san_email: tuple[str, ...] | None = None
    san_uri: tuple[str, ...] | None = None


#: settings that override one another (the last layer that sets one wins)
_SCALARS: Final = (
    "transport",
    "username",
    "password",
    "token",
    "verify",
    "timezone",
    "port",
    "host",
    "device_id",
    "api_url",
    "api_verify",
    "api_rate_per_minute",
)


@dataclass(slots=True)
class _Layer:
    """The settings one level (defaults, a group, a device) sets, as written."""

    line: int = 0
    transport: str | None = None
    username: str | None = None
    password: SecretRef | None = None
    token: SecretRef | None = None
    verify: Verify | None = None
    timezone: str | None = None
    port: int | None = None
    host: str | None = None
    device_id: str | None = None
    api_url: str | None = None
    api_verify: Verify | None = None
    api_rate_per_minute: float | None = None
    tags: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    certificate: _CertLayer | None = None
    #: settings given but invalid (already reported): later checks must not pile on
    invalid: set[str] = field(default_factory=set)


def _merge(layers: Sequence[_Layer]) -> _Layer:
    out = _Layer(line=layers[-1].line, groups=layers[-1].groups)
    tags: dict[str, None] = {}
    cert: _CertLayer | None = None
    for layer in layers:
        for name in _SCALARS:
            if name in layer.invalid:
                setattr(out, name, None)
                out.invalid.add(name)
            else:
                value = getattr(layer, name)
                if value is not None:
                    setattr(out, name, value)
                    out.invalid.discard(name)
        tags.update(dict.fromkeys(layer.tags))
        if layer.certificate is not None:
            cert = _merge_cert(cert, layer.certificate)
    out.tags = tuple(tags)
    out.certificate = cert
    return out


def _merge_cert(base: _CertLayer | None, top: _CertLayer) -> _CertLayer:
    if base is None:
        return top
    return _CertLayer(
        key=top.key if top.key is not None else base.key,
        subject={**base.subject, **top.subject},
        san_dns=top.san_dns if top.san_dns is not None else base.san_dns,
        san_ip=top.san_ip if top.san_ip is not None else base.san_ip,
        san_email=top.san_email if top.san_email is not None else base.san_email,
        san_uri=top.san_uri if top.san_uri is not None else base.san_uri,
    )


def _template(cert: _CertLayer | None) -> CertificateTemplate:
    if cert is None:
        return CertificateTemplate()
    return CertificateTemplate(
        key=cert.key or "rsa-2048",
        subject=cert.subject,
        san_dns=cert.san_dns or (),
        san_ip=cert.san_ip or (),
        san_email=cert.san_email or (),
        san_uri=cert.san_uri or (),
        host_san=all(getattr(cert, kind) is None for kind in _SAN_KINDS),
    )


_Entries = dict[str, tuple[Node, Node]]


class _Loader:
    """One pass over one inventory file, collecting every problem."""

    def __init__(self, path: Path, display: str) -> None:
        self.path = path
        self.display = display
        self.base_dir = path.absolute().parent
        self.problems: list[InventoryError] = []
        self.groups: dict[str, _Layer] = {}
        self.group_lines: dict[str, int] = {}
        self._verify_cache: dict[str, Verify | str] = {}
        self._secret_cache: dict[str, SecretRef | str] = {}
        self._bases: dict[tuple[str, ...], tuple[_Layer, CertificateTemplate | str]] = {}
        self._defaults = _Layer()
        self._ints = SafeConstructor()
        self._budget = _BUDGET_BASE
        self._unknown_reported: set[int] = set()  # id() of key nodes reported unknown
        self._merge_line = 0  # the line of the outermost << being expanded
        self._handlers: dict[str, Callable[[_Layer, Node, str], None]] = {
            "transport": self._set_transport,
            "username": self._set_username,
            "password": self._set_secret,
            "token": self._set_secret,
            "verify": self._set_verify,
            "certificate": self._set_certificate,
            "tags": self._set_tags,
            "timezone": self._set_timezone,
            "port": self._set_port,
            "host": self._set_host,
            "device_id": self._set_device_id,
            "groups": self._set_groups,
            "api_url": self._set_api_url,
            "api_verify": self._set_api_verify,
            "api_rate_per_minute": self._set_api_rate,
        }

    # -- reporting

    def problem(self, line: int | None, key: str | None, message: str) -> None:
        self.problems.append(InventoryError(message, file=self.display, line=line, key=key))

    def fail(self, message: str, line: int | None = None) -> InventoryError:
        return InventoryError(message, file=self.display, line=line)

    # -- the whole file

    def load(self, text: str) -> Inventory:
        self._budget = _BUDGET_BASE + len(text)
        root = self._compose(text)
        if root is None or _is_null(root):
            raise self.fail("the inventory is empty: it needs at least a devices: section")
        if not isinstance(root, MappingNode):
            raise self.fail(
                f"the top level must be a mapping with defaults:, groups: and devices:, "
                f"not {_kind(root)}",
                _line(root),
            )
        top = self._mapping(root, "")
        misspelt: set[str] = set()
        for key, (knode, _value) in top.items():
            if key not in _TOP_KEYS:
                hint = self._unknown_key(knode, key, key, _TOP_KEYS, top, None, "the top level")
                misspelt.update([hint] if hint else [])
        if "defaults" in top and not _is_null(top["defaults"][1]):
            self._defaults = self._layer(top["defaults"][1], "defaults", _COMMON_KEYS, "defaults")
        if "groups" in top:
            self._load_groups(top["groups"][1])
        devices: dict[str, Device] = {}
        if "devices" not in top and "devices" in misspelt:
            pass  # "device:" or the like: already reported with a suggestion
        elif "devices" not in top or _is_null(top["devices"][1]):
            line = _line(top["devices"][0]) if "devices" in top else None
            self.problem(line, "devices", "no devices: add a devices: section with one entry each")
        else:
            devices = self._load_devices(top["devices"][1])
        if self.problems:
            self._raise()
        groups = {
            name: Group(
                name=name,
                tags=tuple(sorted(set(layer.tags))),
                devices=tuple(n for n, d in devices.items() if name in d.groups),
                source=f"{self.display}:{self.group_lines[name]}",
            )
            for name, layer in self.groups.items()
        }
        return Inventory(
            path=self.path.absolute(),
            devices=devices,
            groups=groups,
            warnings=self._warnings(devices),
        )

    def _raise(self) -> None:
        seen: set[tuple[int, str, str]] = set()
        unique: list[InventoryError] = []
        for item in self.problems:
            marker = (item.line or 0, item.key or "", item.reason)
            if marker not in seen:
                seen.add(marker)
                unique.append(item)
        unique.sort(key=lambda p: p.line or 0)
        if len(unique) == 1:
            raise unique[0]
        raise InventoryError(
            f"{len(unique)} problems; the first: {unique[0]}", file=self.display, problems=unique
        )

    def _compose(self, text: str) -> Node | None:
        try:
            self._check_depth(text)
            node: Node | None = yaml.compose(text, Loader=_YamlLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else None
            if "nesting depth" in (exc.problem or ""):
                # libyaml's own limit (PyYAML >= 6.0.4) can fire before certfleet's own check
                raise self.fail(f"nested more than {_MAX_DEPTH} levels deep", line) from None
            detail = exc.problem or exc.context or "invalid YAML"
            if exc.context and exc.problem:
                detail = f"{exc.problem} ({exc.context})"
            raise self.fail(f"YAML syntax error: {detail}", line) from None
        except yaml.reader.ReaderError as exc:
            line = text[: exc.position].count("\n") + 1
            char = exc.character
            code = ord(char) if isinstance(char, str) and len(char) == 1 else char
            shown = f"U+{code:04X}" if isinstance(code, int) else repr(code)
            raise self.fail(f"YAML error: {exc.reason} ({shown})", line) from None
        except yaml.YAMLError as exc:
            raise self.fail(f"YAML error: {exc}") from None
        return node

    def _check_depth(self, text: str) -> None:
        depth = 0
        for event in yaml.parse(text, Loader=_YamlLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > _MAX_DEPTH:
                    line = int(event.start_mark.line) + 1 if event.start_mark else None
                    raise self.fail(f"nested more than {_MAX_DEPTH} levels deep", line)
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1

    def _mapping(
        self, node: MappingNode, path: str, seen: tuple[int, ...] = ()
    ) -> _Entries:
        """The entries of a mapping: duplicate keys reported, ``<<`` merge keys applied.

        ``seen`` is the chain of mappings this one is being merged into; its length bounds the
        depth of merges of merges, and every entry a merge reaches is charged to the file's
        budget, so that nested ``<<: [*a, *a, ...]`` fails at once instead of growing ninefold
        per level.
        """
        entries: _Entries = {}
        merged: _Entries = {}
        if node.tag != _T_MAP:
            self.problem(_line(node), path or None, f"unsupported YAML tag {node.tag!r}")
        if seen:
            self._charge(node, self._merge_line, "this << merge expands")
        else:
            self._charge(node, _line(node), "this mapping, used as an *alias so often, expands")
        for knode, vnode in node.value:
            if knode.tag == _T_MERGE:
                if len(seen) >= _MAX_MERGE_DEPTH:
                    raise self.fail(
                        f"<< merges a mapping that merges another, more than "
                        f"{_MAX_MERGE_DEPTH} levels deep",
                        _line(knode),
                    )
                if not seen:
                    self._merge_line = _line(knode)
                self._merge_key(vnode, path, merged, (*seen, id(node)))
                continue
            kpath = path or "(top level)"
            if not isinstance(knode, ScalarNode) or _is_null(knode):
                self.problem(_line(knode), kpath, f"a key must be plain text, not {_kind(knode)}")
                continue
            key = str(knode.value)
            if key in entries:
                self.problem(
                    _line(knode),
                    f"{path}.{key}" if path else key,
                    f"duplicate key {key!r} (first on line {_line(entries[key][0])})",
                )
                continue
            entries[key] = (knode, vnode)
        for key, entry in merged.items():
            entries.setdefault(key, entry)
        return entries

    def _charge(self, node: MappingNode | SequenceNode, line: int, what: str) -> None:
        """Count ``node``'s entries against the file's budget (see ``_BUDGET_BASE``)."""
        self._budget -= len(node.value)
        if self._budget < 0:
            raise self.fail(
                f"{what} to too many entries for the size of the file (YAML aliases used "
                "many times over: write the settings out, or share them through defaults: "
                "and groups:)",
                line,
            )

    def _merge_key(self, vnode: Node, path: str, into: _Entries, seen: tuple[int, ...]) -> None:
        sources = vnode.value if isinstance(vnode, SequenceNode) else [vnode]
        for source in sources:
            if not isinstance(source, MappingNode):
                self.problem(
                    _line(source), path or None, "<< must merge a mapping (or a list of them)"
                )
                continue
            if id(source) in seen:
                continue
            for key, entry in self._mapping(source, path, seen).items():
                into.setdefault(key, entry)

    # -- sections

    def _load_groups(self, node: Node) -> None:
        if _is_null(node):
            return
        if not isinstance(node, MappingNode):
            self.problem(
                _line(node), "groups", f"must map group names to settings, not {_kind(node)}"
            )
            return
        for name, (knode, vnode) in self._mapping(node, "groups").items():
            path = f"groups.{name}"
            if not _NAME_RE.fullmatch(name):
                self.problem(_line(knode), path, f"group name {name!r} {_NAME_RULE}")
            layer = (
                _Layer(line=_line(knode))
                if _is_null(vnode)
                else self._layer(vnode, path, _COMMON_KEYS, "a group")
            )
            self.groups[name] = layer
            self.group_lines[name] = _line(knode)

    def _load_devices(self, node: Node) -> dict[str, Device]:
        devices: dict[str, Device] = {}
        if not isinstance(node, MappingNode):
            self.problem(
                _line(node), "devices", f"must map device names to settings, not {_kind(node)}"
            )
            return devices
        entries = self._mapping(node, "devices")
        if not entries:
            self.problem(_line(node), "devices", "no devices: add one entry per device")
        for name, (knode, vnode) in entries.items():
            device = self._device(name, knode, vnode)
            if device is not None and not self.problems:
                devices[name] = device
        return devices

    def _device(self, name: str, knode: Node, vnode: Node) -> Device | None:
        path = f"devices.{name}"
        line = _line(knode)
        if not _NAME_RE.fullmatch(name):
            self.problem(line, path, f"device name {name!r} {_NAME_RULE}")
        if _is_null(vnode):
            self.problem(
                line,
                path,
                "the device has no settings: give it host: (or transport: cloud and device_id:)",
            )
            return None
        layer = self._layer(vnode, path, _DEVICE_KEYS, "a device")
        groups = tuple(g for g in layer.groups if g in self.groups)
        base, base_template = self._base(groups)
        merged = _merge([base, layer])
        transport = merged.transport or "local"
        needs = {"local": "host", "websocket": "host", "cloud": "device_id"}.get(transport)
        if (
            needs is not None
            and "transport" not in merged.invalid
            and needs not in merged.invalid
            and getattr(merged, needs) is None
        ):
            what = "the device's name or IP address" if needs == "host" else "the Webex device id"
            self.problem(line, path, f"transport {transport} needs {needs}: ({what})")
        if self.problems:
            return None  # the inventory will not load: building devices is wasted work
        if layer.certificate is None:
            template = base_template
        else:
            try:
                template = _template(merged.certificate)
            except InputError as exc:
                template = exc.message
        if isinstance(template, str):
            self.problem(line, f"{path}.certificate", template)
            return None
        return Device(
            name=name,
            host=merged.host,
            port=merged.port or 443,
            transport=transport,
            username=merged.username,
            password=merged.password,
            token=merged.token,
            device_id=merged.device_id,
            verify=merged.verify or Verify("system"),
            groups=layer.groups,
            tags=tuple(sorted(merged.tags)),
            timezone=merged.timezone,
            certificate=template,
            source=f"{self.display}:{line}",
            api_url=merged.api_url or DEFAULT_API_URL,
            api_verify=merged.api_verify or Verify("system"),
            api_rate_per_minute=merged.api_rate_per_minute,
        )

    def _base(self, groups: tuple[str, ...]) -> tuple[_Layer, CertificateTemplate | str]:
        """defaults + the groups, merged (cached: many devices share the same groups)."""
        cached = self._bases.get(groups)
        if cached is None:
            base = _merge([self._defaults, *(self.groups[g] for g in groups)])
            template: CertificateTemplate | str
            try:
                template = _template(base.certificate)
            except InputError as exc:
                template = exc.message
            cached = self._bases[groups] = (base, template)
        return cached

    def _warnings(self, devices: Mapping[str, Device]) -> list[str]:
        warnings: list[str] = []
        insecure = [d for d in devices.values() if d.verify.insecure and d.transport != "cloud"]
        if 0 < len(insecure) <= 5:
            warnings.extend(
                f"{d.name}: verify: insecure, the device's TLS identity is not checked ({d.source})"
                for d in insecure
            )
        elif insecure:
            names = _listing([d.name for d in insecure], limit=20)
            warnings.append(
                f"{len(insecure)} devices use verify: insecure, their TLS identity is not "
                f"checked: {names}"
            )
        addresses: dict[str, str] = {}
        for device in devices.values():
            if device.transport == "cloud" or device.address is None:
                continue
            other = addresses.setdefault(device.address, device.name)
            if other != device.name:
                warnings.append(f"{other} and {device.name} have the same address {device.address}")
        return warnings

    # -- one level of settings

    def _layer(self, node: Node, path: str, allowed: tuple[str, ...], where: str) -> _Layer:
        layer = _Layer(line=_line(node))
        if not isinstance(node, MappingNode):
            self.problem(_line(node), path, f"must be a mapping of settings, not {_kind(node)}")
            layer.invalid.update(_SCALARS)
            return layer
        entries = self._mapping(node, path)
        for key, (knode, vnode) in entries.items():
            kpath = f"{path}.{key}"
            if key in allowed:
                self._handlers[key](layer, vnode, kpath)
            else:
                self._unknown_key(knode, kpath, key, allowed, entries, layer, where)
        return layer

    def _unknown_key(
        self,
        knode: Node,
        kpath: str,
        key: str,
        allowed: Sequence[str],
        entries: _Entries,
        layer: _Layer | None,
        where: str,
    ) -> str | None:
        """Report an unknown key; returns the key it probably meant, if any."""
        if key in _DEVICE_ONLY_KEYS and allowed is _COMMON_KEYS:
            self.problem(
                _line(knode), kpath, f"{key!r} can only be set on a device, not in {where}"
            )
            return None
        hint, suggestion = _key_hint(key, tuple(allowed))
        if id(knode) not in self._unknown_reported:  # an alias repeats the same key node
            self._unknown_reported.add(id(knode))
            if hint:
                message = f"unknown key {key!r}{hint}"
            else:
                message = f"unknown key {key!r}; allowed in {where}: {', '.join(allowed)}"
            self.problem(_line(knode), kpath, message)
        if suggestion is None or suggestion in entries:
            return None
        if layer is not None:
            layer.invalid.add(suggestion)
        return suggestion

    # -- values

    def _text(self, node: Node, path: str) -> str | None:
        """The text of a scalar as written, or None (reported) for anything else."""
        if isinstance(node, ScalarNode):
            if node.tag in _TEXT_TAGS:
                return str(node.value)
            if node.tag == _T_NULL:
                self.problem(_line(node), path, "has no value")
            else:
                self.problem(_line(node), path, f"unsupported YAML tag {node.tag!r}")
            return None
        self.problem(_line(node), path, f"must be text, not {_kind(node)}")
        return None

    def _nonempty(self, node: Node, path: str) -> str | None:
        value = self._text(node, path)
        if value is not None and not value.strip():
            self.problem(_line(node), path, "is empty")
            return None
        return value

    def _text_list(self, node: Node, path: str) -> list[tuple[str, Node]] | None:
        if not isinstance(node, SequenceNode):
            hint = ""
            if isinstance(node, ScalarNode) and node.tag in _TEXT_TAGS:
                hint = f" (for a single item write [{node.value}])"
            self.problem(_line(node), path, f"must be a list, not {_kind(node)}{hint}")
            return None
        if node.tag != _T_SEQ:
            self.problem(_line(node), path, f"unsupported YAML tag {node.tag!r}")
            return None
        self._charge(node, _line(node), "this list, used as an *alias so often, expands")
        out: list[tuple[str, Node]] = []
        ok = True
        for index, item in enumerate(node.value):
            value = self._nonempty(item, f"{path}[{index}]")
            if value is None:
                ok = False
            else:
                out.append((value, item))
        return out if ok else None

    def _set_transport(self, layer: _Layer, node: Node, path: str) -> None:
        value = self._text(node, path)
        if value is not None and value not in TRANSPORTS:
            self.problem(
                _line(node),
                path,
                f"unknown transport {value!r}{_did_you_mean(value, TRANSPORTS)}; "
                "use local, cloud or websocket",
            )
            value = None
        if value is None:
            layer.invalid.add("transport")
        layer.transport = value

    def _set_username(self, layer: _Layer, node: Node, path: str) -> None:
        value = self._nonempty(node, path)
        if value is None:
            layer.invalid.add("username")
        layer.username = value

    def _set_secret(self, layer: _Layer, node: Node, path: str) -> None:
        name = path.rpartition(".")[2]
        ref: SecretRef | None = None
        if isinstance(node, ScalarNode) and node.tag in _TEXT_TAGS:
            text = str(node.value)
            cached = self._secret_cache.get(text)
            if cached is None:
                try:
                    cached = self._secret_ref(text)
                except SecretError as exc:
                    cached = exc.message
                self._secret_cache[text] = cached
            if isinstance(cached, str):
                self.problem(_line(node), path, cached)
            else:
                ref = cached
        elif isinstance(node, ScalarNode) and node.tag == _T_NULL:
            self.problem(_line(node), path, "has no value")
        else:
            self.problem(
                _line(node),
                path,
                f"must be a secret reference (env:VAR, keyring:SERVICE/USER or file:PATH), "
                f"not {_kind(node)}",
            )
        if ref is None:
            layer.invalid.add(name)
        if name == "password":
            layer.password = ref
        else:
            layer.token = ref

    def _secret_ref(self, text: str) -> SecretRef:
        ref = parse_secret_ref(text)
        if ref.scheme == "file" and not os.path.isabs(os.path.expanduser(ref.target)):
            ref = SecretRef("file", os.path.normpath(self.base_dir / ref.target))
        return ref

    def _set_verify(self, layer: _Layer, node: Node, path: str) -> None:
        value = self._text(node, path)
        verify: Verify | None = None
        if value is not None:
            cached = self._verify_cache.get(value)
            if cached is None:
                try:
                    cached = parse_verify(value, base_dir=self.base_dir)
                except InputError as exc:
                    cached = exc.message
                self._verify_cache[value] = cached
            if isinstance(cached, str):
                self.problem(_line(node), path, cached)
            else:
                verify = cached
        if verify is None:
            layer.invalid.add("verify")
        layer.verify = verify

    def _set_api_url(self, layer: _Layer, node: Node, path: str) -> None:
        value = self._nonempty(node, path)
        if value is not None and not re.fullmatch(r"https?://[^\s/]+(/[^\s]*)?", value):
            self.problem(_line(node), path,
                         f"api_url {value!r} must be an http(s) URL such as https://webexapis.com")
            value = None
        if value is None:
            layer.invalid.add("api_url")
        layer.api_url = value.rstrip("/") if value else None

    def _set_api_verify(self, layer: _Layer, node: Node, path: str) -> None:
        # the same forms as verify:, for the cloud API's TLS
        saved = layer.verify, set(layer.invalid)
        self._set_verify(layer, node, path)
        api_verify, layer.verify = layer.verify, saved[0]
        if "verify" in layer.invalid and "verify" not in saved[1]:
            layer.invalid.discard("verify")
            layer.invalid.add("api_verify")
        layer.api_verify = api_verify

    def _set_api_rate(self, layer: _Layer, node: Node, path: str) -> None:
        rate: float | None = None
        if isinstance(node, ScalarNode) and node.tag in (_T_INT, _T_FLOAT):
            try:
                rate = float(node.value.replace("_", ""))
            except ValueError:
                rate = None
        if rate is None or not (0 < rate <= MAX_API_RATE_PER_MINUTE) or rate != rate:
            given = node.value if isinstance(node, ScalarNode) and node.value else _kind(node)
            self.problem(_line(node), path,
                         f"api_rate_per_minute must be a number of requests a minute above 0 "
                         f"and at most {MAX_API_RATE_PER_MINUTE}, not {given}")
            rate = None
        if rate is None:
            layer.invalid.add("api_rate_per_minute")
        layer.api_rate_per_minute = rate

    def _set_tags(self, layer: _Layer, node: Node, path: str) -> None:
        items = self._text_list(node, path)
        if items is None:
            return
        tags: dict[str, None] = {}
        for index, (tag, item) in enumerate(items):
            if not _TAG_RE.fullmatch(tag):
                self.problem(
                    _line(item),
                    f"{path}[{index}]",
                    f"tag {tag!r} must start with a letter or digit "
                    "and contain no spaces or commas",
                )
            tags[tag] = None
        layer.tags = tuple(tags)

    def _set_groups(self, layer: _Layer, node: Node, path: str) -> None:
        items = self._text_list(node, path)
        if items is None:
            return
        groups: list[str] = []
        for index, (group, item) in enumerate(items):
            ipath = f"{path}[{index}]"
            if group not in self.groups:
                known = ", ".join(self.groups) or "(none defined)"
                self.problem(
                    _line(item),
                    ipath,
                    f"unknown group {group!r}{_did_you_mean(group, self.groups)}; groups: {known}",
                )
            elif group in groups:
                self.problem(_line(item), ipath, f"group {group!r} is listed twice")
            else:
                groups.append(group)
        layer.groups = tuple(groups)

    def _set_timezone(self, layer: _Layer, node: Node, path: str) -> None:
        value = self._nonempty(node, path)
        if value is not None:
            problem = _timezone_problem(value)
            if problem:
                self.problem(_line(node), path, problem)
                value = None
        if value is None:
            layer.invalid.add("timezone")
        layer.timezone = value

    def _set_port(self, layer: _Layer, node: Node, path: str) -> None:
        port: int | None = None
        if isinstance(node, ScalarNode) and node.tag == _T_INT:
            try:
                port = self._ints.construct_yaml_int(node)
            except (ValueError, yaml.YAMLError):
                port = None
            if port is not None and not 1 <= port <= 65535:
                self.problem(_line(node), path, f"port {port} is out of range 1..65535")
                port = None
        else:
            self.problem(
                _line(node), path, f"port must be a whole number from 1 to 65535, not {_kind(node)}"
            )
        if port is None:
            layer.invalid.add("port")
        layer.port = port

    def _set_host(self, layer: _Layer, node: Node, path: str) -> None:
        value = self._nonempty(node, path)
        if value is not None:
            problem = _host_problem(value)
            if problem:
                self.problem(_line(node), path, problem)
                value = None
        if value is None:
            layer.invalid.add("host")
        layer.host = value

    def _set_device_id(self, layer: _Layer, node: Node, path: str) -> None:
        value = self._nonempty(node, path)
        if value is not None and any(c.isspace() for c in value):
            self.problem(_line(node), path, "device_id must not contain spaces")
            value = None
        if value is None:
            layer.invalid.add("device_id")
        layer.device_id = value

    def _set_certificate(self, layer: _Layer, node: Node, path: str) -> None:
        if not isinstance(node, MappingNode):
            self.problem(
                _line(node),
                path,
                f"must be a mapping (key:, subject:, san_dns:, ...), not {_kind(node)}",
            )
            return
        cert = _CertLayer()
        entries = self._mapping(node, path)
        for key, (knode, vnode) in entries.items():
            kpath = f"{path}.{key}"
            if key == "key":
                value = self._text(vnode, kpath)
                if value is not None and value not in KEY_TYPES:
                    self.problem(
                        _line(vnode),
                        kpath,
                        f"unknown key type {value!r}{_did_you_mean(value, KEY_TYPES)}; "
                        f"use one of: {', '.join(KEY_TYPES)}",
                    )
                elif value is not None:
                    cert.key = value
            elif key == "subject":
                self._subject(vnode, kpath, cert)
            elif key in _SAN_KINDS:
                items = self._text_list(vnode, kpath)
                if items is None:
                    continue
                for index, (value, item) in enumerate(items):
                    problem = _san_problem(key, value)
                    if problem:
                        self.problem(_line(item), f"{kpath}[{index}]", problem)
                setattr(cert, key, tuple(value for value, _item in items))
            else:
                self._unknown_key(knode, kpath, key, _CERT_KEYS, entries, None, "certificate")
        layer.certificate = cert

    def _subject(self, node: Node, path: str, cert: _CertLayer) -> None:
        if not isinstance(node, MappingNode):
            self.problem(
                _line(node),
                path,
                f"must be a mapping such as {{O: Example, C: NO}}, not {_kind(node)}",
            )
            return
        entries = self._mapping(node, path)
        for rdn, (knode, vnode) in entries.items():
            rpath = f"{path}.{rdn}"
            if rdn not in SUBJECT_KEYS:
                self._unknown_key(knode, rpath, rdn, SUBJECT_KEYS, entries, None, "subject")
                continue
            value = self._nonempty(vnode, rpath)
            if value is None:
                continue
            problem = _subject_problem(rdn, value)
            if problem:
                self.problem(_line(vnode), rpath, problem)
                continue
            cert.subject[rdn] = value.upper() if rdn == "C" and "{" not in value else value


def load_inventory(path: str | Path) -> Inventory:
    """Load and validate an inventory; InventoryError (with every problem) if it is not valid."""
    file = Path(path)
    display = str(path)
    try:
        data = read_file(file)  # never blocks on a FIFO, never reads /dev/zero, capped
    except IsADirectoryError:
        raise InventoryError("is a directory, not an inventory file", file=display) from None
    except FileNotFoundError:
        raise InventoryError("no such inventory file", file=display) from None
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InventoryError(f"cannot read the inventory: {reason}", file=display) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InventoryError("the inventory is not UTF-8 text", file=display, line=line) from None
    # Composing and checking allocate many small objects and no cycles: the cyclic garbage
    # collector would only triple the time of a 10,000-device load.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _Loader(file, display).load(text)
    finally:
        if gc_was_enabled:
            gc.enable()
