"""fleet.xapi.commands — typed RoomOS operations, written once for every wire.

Real command names from RoomOS schema 11.24 – 26.4 (reference: roomos-local-xapi.md §1). The
transport hands back normalised data; this module turns it into dataclasses and is tolerant
where the reference says a detail is not confirmed (result element names, fingerprint case,
``UsedFor`` wording, date formats).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import BadReplyError, DeviceError, NotSupportedError, ParameterError
from ..fingerprints import normalize_fingerprint
from ..secrets import Secret
from .transport import ParamValue, XapiTransport, xpath

if TYPE_CHECKING:
    from ..firmware import Firmware

__all__ = [
    "PURPOSES",
    "CertificateInfo",
    "EnrollmentProfile",
    "ScepRequest",
    "SystemUnit",
    "Xapi",

    "parse_device_date",
    "purposes_from_used_for",
]

#: the Purpose value space of Services Activate/Deactivate (schema 26.4.1)
PURPOSES = (
    "802.1X", "HTTPS", "Audit", "SIP", "Pairing", "WebexIdentity", "HttpClient", "HttpProxy",
)

_CERTS = ("Security", "Certificates")
_ENROLL = (*_CERTS, "Services", "Enrollment")

# UsedFor holds human service names ("SIP, HTTPS server"), not the Purpose literals. Only
# "SIP" and "HTTPS server" are confirmed; the rest are matched by keyword, tolerantly.
_USED_FOR_KEYWORDS: tuple[tuple[str, str], ...] = (
    ("webexidentity", "WebexIdentity"),
    ("webex identity", "WebexIdentity"),
    ("httpclient", "HttpClient"),
    ("http client", "HttpClient"),
    ("httpproxy", "HttpProxy"),
    ("http proxy", "HttpProxy"),
    ("https", "HTTPS"),
    ("802.1x", "802.1X"),
    ("8021x", "802.1X"),
    ("audit", "Audit"),
    ("sip", "SIP"),
    ("pairing", "Pairing"),
)


@functools.lru_cache(maxsize=1024)  # the same few UsedFor texts on every device
def purposes_from_used_for(text: str) -> tuple[str, ...]:
    """``"SIP, HTTPS server"`` → ``("SIP", "HTTPS")``; unknown words are kept as they are."""
    found: list[str] = []
    for raw in re.split(r"[,;]", text or ""):
        item = raw.strip()
        if not item:
            continue
        lowered = item.lower()
        for keyword, purpose in _USED_FOR_KEYWORDS:
            if keyword in lowered:
                if purpose not in found:
                    found.append(purpose)
                break
        else:
            found.append(item)
    return tuple(found)


_DATE_FORMATS = ("%b %d %H:%M:%S %Y GMT", "%b %d %H:%M:%S %Y", "%Y-%m-%dT%H:%M:%SZ",
                 "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S")


_MONTHS = {name: number for number, name in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_OPENSSL_DATE = re.compile(r"([A-Z][a-z]{2}) +(\d{1,2}) (\d\d):(\d\d):(\d\d) (\d{4})(?: GMT)?")


@functools.lru_cache(maxsize=4096)  # a fleet's CA lists repeat the same dates on every device
def parse_device_date(text: str) -> dt.datetime | None:
    """``Aug 08 03:04:26 2023 GMT`` (also single-digit days and ISO forms) → aware UTC."""
    match = _OPENSSL_DATE.fullmatch(text.strip()) if text else None
    if match and match[1] in _MONTHS:  # the form RoomOS uses, without strptime's cost
        month, day, hour, minute, second, year = (
            _MONTHS[match[1]], *(int(match[i]) for i in range(2, 7)))
        try:
            return dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC)
        except ValueError:
            return None
    value = re.sub(r"\s+", " ", (text or "").strip())
    if not value:
        return None
    for fmt in _DATE_FORMATS:
        try:
            return dt.datetime.strptime(value, fmt).replace(tzinfo=dt.UTC)
        except ValueError:
            continue
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class CertificateInfo:
    """A certificate as a device lists it (Services Show or CA Show ``Details``)."""

    fingerprint: str
    subject: str
    issuer: str
    not_before: dt.datetime | None
    not_after: dt.datetime | None
    serial: str = ""
    key_size: str = ""
    purposes: tuple[str, ...] = ()
    used_for: str = ""

    def days_left(self, now: dt.datetime | None = None) -> float | None:
        if self.not_after is None:
            return None
        now = now or dt.datetime.now(dt.UTC)
        return (self.not_after - now).total_seconds() / 86400

    @classmethod
    def from_details(cls, item: Any, where: str) -> CertificateInfo:
        if not isinstance(item, dict):
            raise BadReplyError(f"{where}: a Details entry is not a structure: {item!r:.60}")
        # a fleet's devices list the same CAs: an entry read once is not read again (the
        # result is frozen, so devices may share it); one holding a structure is not kept
        pairs = tuple(item.items())
        try:
            hash(pairs)
        except TypeError:
            return cls._read_details(item, where)
        return _details_entry(pairs, where)

    @classmethod
    def _read_details(cls, item: dict[str, Any], where: str) -> CertificateInfo:
        raw_fp = str(item.get("Fingerprint", ""))
        try:
            fp = normalize_fingerprint(raw_fp)
        except ValueError:
            raise BadReplyError(f"{where}: Details entry without a valid Fingerprint") from None
        used_for = str(item.get("UsedFor", "") or "")
        return cls(
            fingerprint=fp,
            subject=str(item.get("SubjectName", "") or ""),
            issuer=str(item.get("IssuerName", "") or ""),
            not_before=parse_device_date(str(item.get("notBefore", item.get("NotBefore", "")))),
            not_after=parse_device_date(str(item.get("notAfter", item.get("NotAfter", "")))),
            serial=str(item.get("SerialNumber", "") or ""),
            key_size=str(item.get("PublicKeySize", "") or ""),
            purposes=purposes_from_used_for(used_for),
            used_for=used_for,
        )

    def to_dict(self, now: dt.datetime | None = None) -> dict[str, Any]:
        days = self.days_left(now)
        return {
            "fingerprint": self.fingerprint,
            "subject": self.subject,
            "issuer": self.issuer,
            "not_before": self.not_before.isoformat() if self.not_before else None,
            "not_after": self.not_after.isoformat() if self.not_after else None,
            "days_left": round(days, 1) if days is not None else None,
            "serial": self.serial,
            "purposes": list(self.purposes),
        }


@functools.lru_cache(maxsize=4096)
def _details_entry(pairs: tuple[tuple[str, Any], ...], where: str) -> CertificateInfo:
    return CertificateInfo._read_details(dict(pairs), where)


@dataclass(frozen=True)
class SystemUnit:
    product: str
    serial: str
    software: str
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def to_dict(self) -> dict[str, str]:
        return {"product": self.product, "serial": self.serial, "software": self.software}


def _details(result: dict[str, Any], where: str) -> list[CertificateInfo]:
    # The result element's name differs by command (CAShowResult is not confirmed); the
    # transport already unwrapped it, so only its Details children matter here.
    items = result.get("Details", [])
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list):
        raise BadReplyError(f"{where}: Details is neither a list nor a structure")
    return [CertificateInfo.from_details(item, where) for item in items]


def _dig(data: Any, *keys: str) -> str:
    for key in keys:
        if not isinstance(data, dict):
            return ""
        data = data.get(key)
    return str(data) if isinstance(data, (str, int)) else ""


class Xapi:
    """The RoomOS certificate vocabulary over any :class:`XapiTransport`.

    ``read_only`` refuses every operation that changes the device: plans run with it during
    ``--dry-run``, so a dry run cannot write even if a plan has a bug.

    ``firmware`` (set once the run has read the device's release): every command and
    configuration is checked against that release's model before it is sent; what the release
    lacks is never sent — a missing command is :class:`NotSupportedError` (which tolerant reads
    take as absent), a parameter or value it does not take is :class:`ParameterError`.
    """

    def __init__(self, transport: XapiTransport, *, read_only: bool = False,
                 firmware: Firmware | None = None) -> None:
        self.transport = transport
        self.read_only = read_only
        self.firmware = firmware

    def _check(self, path: Sequence[str], params: dict[str, ParamValue] | None) -> None:
        fw = self.firmware
        if fw is None:
            return
        why = fw.problem(path, params)
        if why is None:
            return
        where = f"RoomOS {fw.label}" + (f" on a {fw.product}" if fw.product else "")
        missing = fw.model.command(" ".join(path), fw.code) is None
        error = NotSupportedError if missing else ParameterError
        raise error(f"not sent: {why} in {where} (release model {fw.model.release})",
                    xpath=xpath(path), reason=why)

    async def _send(
        self, path: Sequence[str], params: dict[str, ParamValue] | None = None,
        body: str | None = None, *, idempotent: bool = False,
    ) -> dict[str, Any]:
        self._check(path, params)
        return await self.transport.command(path, params, body, idempotent=idempotent)

    async def _write(
        self, path: Sequence[str], params: dict[str, ParamValue] | None = None,
        body: str | None = None, *, idempotent: bool = False,
    ) -> dict[str, Any]:
        if self.read_only:
            # a plan that writes during a dry run: said as this device's error, not a crash
            raise DeviceError(f"dry run: refused to send {' '.join(path)}", xpath=xpath(path))
        return await self._send(path, params, body, idempotent=idempotent)

    # -- status ----------------------------------------------------------------------

    async def system_unit(self) -> SystemUnit:
        data = await self.transport.get(("Status", "SystemUnit"))
        if not isinstance(data, dict):
            raise BadReplyError("Status/SystemUnit: no SystemUnit in the reply")
        return SystemUnit(
            product=_dig(data, "ProductId") or _dig(data, "ProductPlatform"),
            serial=_dig(data, "Hardware", "Module", "SerialNumber"),
            software=_dig(data, "Software", "DisplayName") or _dig(data, "Software", "Version"),
            raw=data,
        )

    # -- CA list ---------------------------------------------------------------------

    async def ca_show(self) -> list[CertificateInfo]:
        path = (*_CERTS, "CA", "Show")
        result = await self._send(path, idempotent=True)
        return _details(result, "/".join(path))

    async def ca_add(self, pem: str) -> None:
        """Append CA certificate(s) to the trust list (the device keeps what it had)."""
        await self._write((*_CERTS, "CA", "Add"), body=pem, idempotent=True)

    async def ca_delete(self, fingerprint: str) -> None:
        await self._write((*_CERTS, "CA", "Delete"), {"Fingerprint": fingerprint})

    # -- service certificates --------------------------------------------------------

    async def services_show(
        self, *, purpose: str | None = None, algorithm: str = "SHA-1"
    ) -> list[CertificateInfo]:
        path = (*_CERTS, "Services", "Show")
        params: dict[str, ParamValue] = {}
        if purpose:
            params["Filter"] = purpose
        if algorithm != "SHA-1":
            params["FingerprintAlgorithm"] = algorithm
        result = await self._send(path, params or None, idempotent=True)
        return _details(result, "/".join(path))

    async def services_add(self, bundle_pem: str, key_password: Secret | None = None) -> None:
        """Upload leaf certificate, chain and private key (one PEM body, leaf first)."""
        params: dict[str, ParamValue] = {}
        if key_password is not None:
            params["PrivateKeyPassword"] = key_password.reveal()
        await self._write((*_CERTS, "Services", "Add"), params or None, bundle_pem,
                          idempotent=True)

    async def services_activate(self, fingerprint: str, purpose: str) -> None:
        await self._write(
            (*_CERTS, "Services", "Activate"),
            {"Fingerprint": fingerprint, "Purpose": purpose},
            idempotent=True,
        )

    async def services_deactivate(self, fingerprint: str, purpose: str) -> None:
        await self._write(
            (*_CERTS, "Services", "Deactivate"),
            {"Fingerprint": fingerprint, "Purpose": purpose},
            idempotent=True,
        )

    async def services_delete(self, fingerprint: str) -> None:
        await self._write((*_CERTS, "Services", "Delete"), {"Fingerprint": fingerprint})

    # -- enrollment, renewal profiles, network, reboot -------------------------------

    async def scep_request(self, request: ScepRequest) -> str:
        """On-device SCEP enrollment; returns the new certificate's fingerprint."""
        result = await self._write((*_ENROLL, "SCEP", "Request"), request.params())
        fp = result.get("CertFingerprint")
        if not isinstance(fp, str) or not fp.strip():
            raise BadReplyError("SCEP Request succeeded without a CertFingerprint in the reply",
                                xpath="/".join((*_ENROLL, "SCEP", "Request")))
        return normalize_fingerprint(fp)

    async def profiles_list(self, *, tolerant: bool = False) -> list[EnrollmentProfile]:
        """The renewal profiles. ``tolerant``: firmware without the command (9.15, 10.19) has
        none — the device saying it has no such command, in any wire's words
        (:class:`NotSupportedError`), then means an empty list."""
        path = (*_ENROLL, "Profiles", "List")
        try:
            result = await self._send(path, idempotent=True)
        except NotSupportedError:
            if tolerant:
                return []
            raise
        profiles = []
        for item in _find_profiles(result):
            try:
                fp = normalize_fingerprint(str(item.get("Fingerprint", "")))
            except ValueError:
                raise BadReplyError(f"{'/'.join(path)}: a profile without a valid Fingerprint") \
                    from None
            profiles.append(EnrollmentProfile(fingerprint=fp, url=str(item.get("URL", "") or "")))
        return profiles

    async def profiles_set(self, fingerprint: str, url: str, challenge: Secret | None) -> None:
        params: dict[str, ParamValue] = {"Fingerprint": fingerprint, "URL": url}
        if challenge is not None:
            params["ChallengePassword"] = challenge.reveal()
        await self._write((*_ENROLL, "SCEP", "Profiles", "Set"), params, idempotent=True)

    async def profiles_delete(self, fingerprint: str) -> None:
        await self._write((*_ENROLL, "Profiles", "Delete"), {"Fingerprint": fingerprint})

    async def wifi_configure(self, *,
        ssid: str,
        wifi_type: str,
        identity: str | None,
        allow_missing_ca: bool,
        connect: str | None = "Auto",
    ) -> None:
        params: dict[str, ParamValue] = {
            "SSID": ssid,
            "Type": wifi_type,
            "AllowMissingCA": "True" if allow_missing_ca else "False",
        }
        if identity:
            params["Identity"] = identity
        if connect:
            params["Connect"] = connect
        await self._write(("Network", "Wifi", "Configure"), params, idempotent=True)

    async def set_configuration(self, path: Sequence[str | int], value: str) -> None:
        if self.read_only:
            where = "/".join(map(str, path))
            raise DeviceError(f"dry run: refused to configure {where}", xpath=where)
        fw = self.firmware
        if fw is not None and not fw.has_configuration(path, value):
            name = " ".join(map(str, path))
            where = f"RoomOS {fw.label}" + (f" on a {fw.product}" if fw.product else "")
            if fw.has_configuration(path):
                raise ParameterError(f"not sent: {name} does not take {value!r} in {where}",
                                     xpath="/".join(map(str, path)), reason="illegal value")
            raise NotSupportedError(f"not sent: there is no configuration {name} in {where}",
                                    xpath="/".join(map(str, path)), reason="no such node")
        await self.transport.configure(path, value)

    async def read_tree(self, path: Sequence[str | int]) -> Any:
        return await self.transport.get(path)

    async def reboot(self) -> None:
        path = ("SystemUnit", "Boot")
        params: dict[str, ParamValue] = {"Action": "Restart"}
        if self.firmware is None or self.firmware.accepts(path, "Force", "True"):
            params["Force"] = "True"  # one 9.15 product has no Force
        await self._write(path, params)


# ---------------------------------------------------------------------- enrollment etc.


@dataclass(frozen=True)
class EnrollmentProfile:
    """A device SCEP renewal profile (``Enrollment Profiles List``)."""

    fingerprint: str  # of the CA whose certificates the device renews
    url: str

    def to_dict(self) -> dict[str, str]:
        return {"fingerprint": self.fingerprint, "url": self.url}


def _find_profiles(data: Any) -> list[dict[str, Any]]:
    # The reply shape of Profiles List is not confirmed: take every structure that carries a
    # Fingerprint, wherever it sits in the result.
    found: list[dict[str, Any]] = []
    if isinstance(data, dict):
        if "Fingerprint" in data:
            found.append(data)
        else:
            for value in data.values():
                found += _find_profiles(value)
    elif isinstance(data, list):
        for item in data:
            found += _find_profiles(item)
    return found


@dataclass(frozen=True)
class ScepRequest:
    url: str
    ca_fingerprint: str
    common_name: str
    challenge: Secret | None = None
    country: str = ""
    state: str = ""
    locality: str = ""
    organization: str = ""
    organizational_units: tuple[str, ...] = ()
    san_dns: tuple[str, ...] = ()
    san_email: tuple[str, ...] = ()
    san_ip: tuple[str, ...] = ()
    san_uri: tuple[str, ...] = ()

    def params(self) -> dict[str, ParamValue]:
        params: dict[str, ParamValue] = {
            "URL": self.url,
            "Fingerprint": self.ca_fingerprint,
            "CommonName": self.common_name,
        }
        if self.challenge is not None:
            params["ChallengePassword"] = self.challenge.reveal()
        for name, value in (("CountryName", self.country), ("StateOrProvinceName", self.state),
                            ("LocalityName", self.locality),
                            ("OrganizationName", self.organization)):
            if value:
                params[name] = value
        for name, values in (("OrganizationalUnit", self.organizational_units),
                             ("SanDns", self.san_dns), ("SanEmail", self.san_email),
                             ("SanIp", self.san_ip), ("SanUri", self.san_uri)):
            if values:
                params[name] = list(values[:5])
        return params
