"""fleet.inventory.template — what a device certificate should look like: the template an
inventory gives (with ``{name}``-style placeholders) and its rendering for one device."""

from __future__ import annotations

import ipaddress
import re
import string
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Final

from ..errors import InputError
from .checks import _is_dns_name, _is_ip

if TYPE_CHECKING:
    from .model import Device

KEY_TYPES: Final = ("rsa-2048", "rsa-3072", "rsa-4096", "ec-p256", "ec-p384")
#: subject RDNs, in the order they appear in a rendered subject
SUBJECT_KEYS: Final = ("C", "ST", "L", "O", "OU", "CN")
#: the placeholders a certificate template may use (``{site}`` is an alias of ``{group}``)
PLACEHOLDERS: Final = ("name", "host", "port", "group", "site")
_SAN_KINDS: Final = ("san_dns", "san_ip", "san_email", "san_uri")
#: RFC 5280 upper bounds
_SUBJECT_MAX: Final = {"C": 2, "ST": 128, "L": 128, "O": 64, "OU": 64, "CN": 64}
_EMAIL_RE: Final = re.compile(r"[^@\s]+@[^@\s]+")
_URI_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S+")


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
