"""fleet.pki.certs — certificates as certfleet sees them: PEM bundles, fingerprints, names.

Everything here is local and pure: it reads bytes, never the network. The fingerprint format is
the device's (lowercase hex, no separators) so values can be compared with what RoomOS reports.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from ..errors import PemError
from ..files import read_file
from ..fingerprints import normalize_fingerprint

__all__ = [
    "CaCertificate",
    "fingerprint",
    "load_ca_files",
    "normalize_fingerprint",
    "oneline_name",
    "parse_pem_certificates",
]

HashName = Literal["sha1", "sha256"]

_PEM_BLOCK = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----",
    re.DOTALL,
)
_KEY_LABELS = ("PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY",
               "DSA PRIVATE KEY", "OPENSSH PRIVATE KEY")

_SHORT_NAMES = {
    NameOID.COUNTRY_NAME: "C",
    NameOID.STATE_OR_PROVINCE_NAME: "ST",
    NameOID.LOCALITY_NAME: "L",
    NameOID.ORGANIZATION_NAME: "O",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.COMMON_NAME: "CN",
    NameOID.EMAIL_ADDRESS: "emailAddress",
    NameOID.SERIAL_NUMBER: "serialNumber",
    NameOID.DOMAIN_COMPONENT: "DC",
}


def fingerprint(cert: x509.Certificate, algorithm: HashName = "sha1") -> str:
    """The certificate's fingerprint as RoomOS prints it: lowercase hex, no separators."""
    algo: hashes.HashAlgorithm = hashes.SHA1() if algorithm == "sha1" else hashes.SHA256()
    return cert.fingerprint(algo).hex()


def oneline_name(name: x509.Name) -> str:
    """OpenSSL's one-line form (``/C=US/O=Example/CN=host``), the form RoomOS reports."""
    parts = []
    for rdn in name.rdns:
        for attr in rdn:
            label = _SHORT_NAMES.get(attr.oid, attr.oid.dotted_string)
            parts.append(f"/{label}={attr.value!s}")
    return "".join(parts)


def parse_pem_certificates(
    data: bytes, *, source: str, allow_private_key: bool = False
) -> list[x509.Certificate]:
    """Every CERTIFICATE block of a PEM file, in file order.

    Raises PemError (naming ``source``) when there is no certificate, when a block does not
    decode, when a block is of an unexpected type, or — unless allowed — when the file also
    holds a private key.
    """
    blocks = list(_PEM_BLOCK.finditer(data))
    if not blocks:
        if b"-----BEGIN" in data:
            raise PemError("has a PEM header without a matching END line", file=source)
        raise PemError("is not a PEM file (no -----BEGIN CERTIFICATE----- block)", file=source)
    certs: list[x509.Certificate] = []
    for number, block in enumerate(blocks, start=1):
        label = block.group(1).decode("ascii", "replace")
        if label in _KEY_LABELS:
            if allow_private_key:
                continue
            raise PemError(
                f"block {number} is a private key ({label}); this file must hold certificates "
                "only — nothing was sent to any device",
                file=source,
            )
        if label not in ("CERTIFICATE", "TRUSTED CERTIFICATE", "X509 CERTIFICATE"):
            raise PemError(f"block {number} is a {label}, not a CERTIFICATE", file=source)
        try:
            certs.append(x509.load_pem_x509_certificate(block.group(0)))
        except ValueError as exc:
            raise PemError(
                f"certificate block {number} does not decode: {exc}", file=source
            ) from exc
    if not certs:
        raise PemError("holds no certificate", file=source)
    return certs


@dataclass(frozen=True)
class CaCertificate:
    """A CA certificate to put on devices, with the identifiers devices report."""

    source: str
    cert: x509.Certificate
    pem: str
    sha1: str
    sha256: str
    subject: str
    not_after: dt.datetime

    @classmethod
    def from_cert(cls, cert: x509.Certificate, *, source: str) -> CaCertificate:
        return cls(
            source=source,
            cert=cert,
            pem=cert.public_bytes(serialization.Encoding.PEM).decode("ascii"),
            sha1=fingerprint(cert, "sha1"),
            sha256=fingerprint(cert, "sha256"),
            subject=oneline_name(cert.subject),
            not_after=cert.not_valid_after_utc,
        )

    def matches(self, device_fingerprint: str) -> bool:
        """Does a fingerprint reported by a device (SHA-1 or SHA-256, any case) name this CA?"""
        if device_fingerprint == self.sha1 or device_fingerprint == self.sha256:
            return True  # already in the form certfleet keeps (a device's list, read)
        try:
            value = normalize_fingerprint(device_fingerprint)
        except ValueError:
            return False
        return value in (self.sha1, self.sha256)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        # v1 roots have no extensions at all and are CAs by convention; a v3 certificate
        # without basicConstraints is not a CA (RFC 5280 4.2.1.9).
        return cert.version == x509.Version.v1
    return bc.ca


def load_ca_files(
    paths: Iterable[str | Path], *, now: dt.datetime | None = None
) -> list[CaCertificate]:
    """Read CA files for ``push-ca``: every certificate must be a CA and within its validity.

    The same CA given twice (in one file or across files) is kept once. Errors name the file.
    """
    now = now or dt.datetime.now(dt.UTC)
    seen: dict[str, CaCertificate] = {}
    for raw_path in paths:
        path = Path(raw_path)
        source = str(raw_path)
        try:
            data = read_file(path)  # never blocks on a FIFO, never reads /dev/zero, capped
        except FileNotFoundError:
            raise PemError("does not exist", file=source) from None
        except IsADirectoryError:
            raise PemError("is a directory, not a PEM file", file=source) from None
        except OSError as exc:
            raise PemError(f"cannot be read: {exc.strerror}", file=source) from None
        for index, cert in enumerate(parse_pem_certificates(data, source=source), start=1):
            ca = CaCertificate.from_cert(cert, source=source)
            where = f"certificate {index} ({ca.subject or 'empty subject'})"
            if not _is_ca(cert):
                raise PemError(
                    f"{where} is not a CA certificate (basicConstraints CA is not true); "
                    "push-ca installs trust anchors only",
                    file=source,
                )
            if ca.not_after < now:
                raise PemError(
                    f"{where} expired on {ca.not_after:%Y-%m-%d %H:%M} UTC", file=source
                )
            if cert.not_valid_before_utc > now:
                raise PemError(
                    f"{where} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC",
                    file=source,
                )
            seen.setdefault(ca.sha1, ca)
    if not seen:
        raise PemError("no CA certificate given")
    return list(seen.values())
