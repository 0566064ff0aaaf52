"""On-device SCEP enrollment and renewal profiles (reference §1.3), with certfleet's own SCEP
client (`fleet.pki.scep`): a simulated device enrolls against a real SCEP server exactly as
certfleet's `scep` signer does, through the same code.

Enrollment: the device makes an RSA key of `Security Enrollment KeySize` bits (in a worker
thread: key generation must not stall the event loop that serves every device), builds the
CSR (subject C, ST, L, O, OU…, CN; the SANs), enrolls, and keeps certificate, chain and key
in its service store, active for nothing. The signing CA is not added to the CA list (real
behaviour). Nothing changes on the device when enrollment fails, and the challenge password
is never stored or logged.

Renewal (real behaviour): the device looks at every certificate it holds, not only the
enrolled ones; one expiring within 45 days whose issuer is the CA of a renewal profile (the
profile's fingerprint pins the CA the server's GetCACert returns) is enrolled again with a
new key, takes over the purposes of the old certificate, and the old one is removed. A real
device does this once a day; the simulator does it when asked (`SimDevice.run_renewal_check`)
or every `renewal_interval` seconds of a `SimFleet`."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from certfleet.fleet.errors import ScepError
from certfleet.fleet.pki.scep import ScepClient, build_scep_csr
from certfleet.fleet.secrets import Secret

from .certs import CertInfo, normalize_fingerprint
from .errors import DeviceError
from .store import ServiceCert

if TYPE_CHECKING:
    from .device import SimDevice

log = logging.getLogger(__name__)

RENEW_WITHIN = dt.timedelta(days=45)
KEY_SIZE_LEAF = "Security/Enrollment/KeySize"
_HEX = re.compile(r"^[0-9a-f]+$")


class EnrollmentError(DeviceError):
    """Enrollment or a profile command failed; `str(error)` is the device's Reason."""


# --------------------------------------------------------------------------- profiles


class EnrollmentProfile(TypedDict):
    """A SCEP renewal profile, as kept in the device state: certificates issued by the CA
    with this `fingerprint` (normalised: lowercase SHA-1 or SHA-256 hex) are renewed at
    `url`. The challenge ("" = none) is the device's own secret: stored, never shown."""

    fingerprint: str
    url: str
    challenge: str


def profile_from_state(data: dict[str, Any]) -> EnrollmentProfile:
    return EnrollmentProfile(
        fingerprint=str(data["fingerprint"]),
        url=str(data["url"]),
        challenge=str(data.get("challenge", "")),
    )


def ca_fingerprint(value: str) -> str:
    """A CA fingerprint as SCEP pins it: SHA-1 (40) or SHA-256 (64) hex digits; colons,
    spaces and case are tolerated."""
    digits = normalize_fingerprint(value)
    if len(digits) not in (40, 64) or not _HEX.match(digits):
        raise EnrollmentError(
            "Invalid Fingerprint: give the SHA-1 or SHA-256 fingerprint of the CA in hex"
        )
    return digits


def scep_url(value: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EnrollmentError("Invalid URL: give the SCEP server as http:// or https:// URL")
    return value.strip()


# --------------------------------------------------------------------------- the request


def build_subject(
    common_name: str,
    *,
    country: str = "",
    state: str = "",
    locality: str = "",
    organization: str = "",
    units: Sequence[str] = (),
) -> x509.Name:
    """The CSR subject in the device's order: /C= /ST= /L= /O= /OU=… /CN=."""
    if country and (len(country) != 2 or not country.isascii()):
        raise EnrollmentError("Invalid CountryName: use a two-letter country code")
    pairs = [
        ("CountryName", NameOID.COUNTRY_NAME, country),
        ("StateOrProvinceName", NameOID.STATE_OR_PROVINCE_NAME, state),
        ("LocalityName", NameOID.LOCALITY_NAME, locality),
        ("OrganizationName", NameOID.ORGANIZATION_NAME, organization),
        *(("OrganizationalUnit", NameOID.ORGANIZATIONAL_UNIT_NAME, unit) for unit in units),
        ("CommonName", NameOID.COMMON_NAME, common_name),
    ]
    attributes = []
    for param, oid, value in pairs:
        if not value:
            continue
        try:
            attributes.append(x509.NameAttribute(oid, value))
        except ValueError as exc:
            raise EnrollmentError(f"Invalid {param}: {exc}") from None
    return x509.Name(attributes)


def build_san(
    *,
    dns: Sequence[str] = (),
    email: Sequence[str] = (),
    ip: Sequence[str] = (),
    uri: Sequence[str] = (),
) -> list[x509.GeneralName]:
    """The SANs in parameter order (DNS, e-mail, IP, URI); names must be ASCII (IDNA
    A-labels), as in a certificate."""
    names: list[x509.GeneralName] = []
    for param, kind, values in (
        ("SanDns", x509.DNSName, dns),
        ("SanEmail", x509.RFC822Name, email),
        ("SanIp", None, ip),
        ("SanUri", x509.UniformResourceIdentifier, uri),
    ):
        for value in (v.strip() for v in values if v.strip()):
            try:
                if kind is None:
                    names.append(x509.IPAddress(ipaddress.ip_address(value)))
                else:
                    names.append(kind(value))
            except ValueError:
                problem = "is not an IP address" if kind is None else "is not an ASCII name"
                raise EnrollmentError(f"Invalid {param}: {value!r} {problem}") from None
    return names


def failure_reason(exc: ScepError) -> str:
    """The device's Reason for a failed SCEP exchange."""
    if exc.fail_info:
        return f"SCEP enrollment rejected: {exc.fail_info}"
    text = exc.message
    if "CA fingerprint mismatch" in text:
        return "CA fingerprint mismatch"
    marker = " unreachable: "
    if marker in text:
        detail = text.split(marker, 1)[1]
        if "timed out" in detail:
            return f"SCEP server timeout: {detail}"
        return f"SCEP server unreachable: {detail}"
    return f"SCEP enrollment failed: {text}"


def _key_and_csr(
    key_size: int,
    subject: x509.Name,
    san: Sequence[x509.GeneralName],
    challenge: Secret | None,
) -> tuple[rsa.RSAPrivateKey, x509.CertificateSigningRequest]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    return key, build_scep_csr(key, subject, san=list(san), challenge=challenge)


def _client(url: str, fingerprint: str, timeout: float) -> ScepClient:
    try:
        return ScepClient(url, ca_fingerprint=fingerprint, timeout=timeout)
    except ScepError as exc:
        raise EnrollmentError(f"Invalid URL or Fingerprint: {exc.message}") from None


async def _enroll_with(
    device: SimDevice,
    client: ScepClient,
    subject: x509.Name,
    san: Sequence[x509.GeneralName],
    challenge: Secret | None,
) -> ServiceCert:
    """A new key, a CSR and one PKCSReq; the new certificate, not yet stored."""
    key_size = int(device.config.get(KEY_SIZE_LEAF, "2048"))
    key, csr = await asyncio.to_thread(_key_and_csr, key_size, subject, san, challenge)
    try:
        result = await client.enroll(csr, key, challenge=challenge)
    except ScepError as exc:
        raise EnrollmentError(failure_reason(exc)) from None
    chain = [CertInfo.of(cert) for cert in result.chain]
    return ServiceCert(CertInfo.of(result.cert), chain, key, [])


async def enroll(
    device: SimDevice,
    *,
    url: str,
    fingerprint: str,
    subject: x509.Name,
    san: Sequence[x509.GeneralName] = (),
    challenge: Secret | None = None,
) -> ServiceCert:
    """`SCEP Request`: enroll, then store the certificate (active for nothing) and save."""
    client = _client(scep_url(url), ca_fingerprint(fingerprint), device.scep_timeout)
    try:
        service = await _enroll_with(device, client, subject, san, challenge)
    finally:
        await client.aclose()
    device.store.services.append(service)
    device.certificates_changed()
    log.info("%s: enrolled %s at %s", device.name, service.fingerprint, url)
    return service


# --------------------------------------------------------------------------- renewal


@dataclass(frozen=True)
class RenewalResult:
    """One certificate renewed (`new_fingerprint`), or a failure (`error`); a profile
    whose server could not be asked has `old_fingerprint` None."""

    device: str
    profile: str  # the profile's CA fingerprint
    old_fingerprint: str | None
    new_fingerprint: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    if cert.issuer != ca.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _san_of(cert: x509.Certificate) -> list[x509.GeneralName]:
    try:
        return list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return []


def _due(device: SimDevice, now: dt.datetime, done: set[str]) -> list[ServiceCert]:
    return [
        s
        for s in device.services
        if s.fingerprint not in done and s.cert.not_valid_after_utc - now <= RENEW_WITHIN
    ]


async def run_renewal_check(
    device: SimDevice, now: dt.datetime | None = None
) -> list[RenewalResult]:
    """Renew, profile by profile, every certificate of the device that expires within 45
    days of `now` and was issued by the profile's CA. Returns what was done."""
    moment = now or dt.datetime.now(dt.UTC)
    results: list[RenewalResult] = []
    done: set[str] = set()
    for profile in list(device.profiles):
        if not _due(device, moment, done):
            continue
        ca_fp = profile["fingerprint"]
        try:
            client = _client(profile["url"], ca_fp, device.scep_timeout)
        except EnrollmentError as exc:
            results.append(RenewalResult(device.name, ca_fp, None, error=str(exc)))
            continue
        try:
            try:
                ca = (await client.get_ca()).ca
            except ScepError as exc:
                error = failure_reason(exc)
                results.append(RenewalResult(device.name, ca_fp, None, error=error))
                continue
            for old in _due(device, moment, done):
                if not _issued_by(old.cert, ca):
                    continue
                done.add(old.fingerprint)
                results.append(await _renew(device, client, profile, old))
        finally:
            await client.aclose()
    return results


async def _renew(
    device: SimDevice, client: ScepClient, profile: EnrollmentProfile, old: ServiceCert
) -> RenewalResult:
    ca_fp = profile["fingerprint"]
    challenge = Secret(profile["challenge"]) if profile["challenge"] else None
    try:
        new = await _enroll_with(device, client, old.cert.subject, _san_of(old.cert), challenge)
    except EnrollmentError as exc:
        log.warning("%s: renewal of %s failed: %s", device.name, old.fingerprint, exc)
        return RenewalResult(device.name, ca_fp, old.fingerprint, error=str(exc))
    services = device.store.services
    if not any(s is old for s in services):  # deleted while the request ran: keep it gone
        error = "The certificate was deleted during renewal"
        return RenewalResult(device.name, ca_fp, old.fingerprint, error=error)
    new.purposes = list(old.purposes)
    services[next(i for i, s in enumerate(services) if s is old)] = new
    device.certificates_changed()
    log.info("%s: renewed %s as %s", device.name, old.fingerprint, new.fingerprint)
    return RenewalResult(device.name, ca_fp, old.fingerprint, new.fingerprint)
