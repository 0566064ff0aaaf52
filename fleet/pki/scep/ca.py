"""fleet.pki.scep.ca — what GetCACert and GetCACaps said: the CA, the certificate requests are
encrypted to, and the check of the pinned fingerprint."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from ...errors import ScepError

_CONTENT_TYPES_CERTS: Final = ("application/x-x509-ca-ra-cert",)


@dataclass(frozen=True)
class CaInfo:
    """What GetCACert and GetCACaps said, checked against the pinned fingerprint (if any)."""

    #: every certificate the server sent, in its order
    certs: tuple[x509.Certificate, ...]
    #: the GetCACaps keywords, as the server spelled them
    caps: frozenset[str]
    #: the certificate requests are encrypted to: an RA certificate with keyEncipherment that
    #: the CA issued, if the server sent one, else the CA itself
    recipient: x509.Certificate
    #: the CA that issues the certificates
    ca: x509.Certificate

    @property
    def ca_sha256(self) -> str:
        """SHA-256 of the CA certificate's DER, lowercase hex (what ``ca_fingerprint`` takes)."""
        return _sha256_hex(self.ca)

    def has_cap(self, keyword: str) -> bool:
        """Whether GetCACaps listed ``keyword`` (case-insensitive, as RFC 8894 asks)."""
        wanted = keyword.casefold()
        return any(cap.casefold() == wanted for cap in self.caps)


def _sha256_hex(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _sha1_hex(cert: x509.Certificate) -> str:
    return hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _fingerprint_of(cert: x509.Certificate, length: int) -> str:
    return _sha256_hex(cert) if length == 64 else _sha1_hex(cert)


def _load_ca_certs(data: bytes, content_type: str, *, url: str) -> tuple[x509.Certificate, ...]:
    """The certificates of a GetCACert answer: one DER certificate (x509-ca-cert) or a
    certs-only PKCS#7 (x509-ca-ra-cert); whatever the content type says, both are tried."""
    kind = content_type.split(";")[0].strip().lower()
    loaders = [_load_single, _load_pkcs7]
    if kind in _CONTENT_TYPES_CERTS:
        loaders.reverse()
    for loader in loaders:
        certs = loader(data)
        if certs:
            return certs
    raise ScepError(
        f"SCEP server {url} answered GetCACert with {len(data)} bytes of {kind or 'no type'} "
        "that hold no certificate"
    )


def _load_single(data: bytes) -> tuple[x509.Certificate, ...]:
    try:
        return (x509.load_der_x509_certificate(data),)
    except ValueError:
        pass
    try:
        return tuple(x509.load_pem_x509_certificates(data))
    except ValueError:
        return ()


def _load_pkcs7(data: bytes) -> tuple[x509.Certificate, ...]:
    try:
        return tuple(pkcs7.load_der_pkcs7_certificates(data))
    except ValueError:
        pass
    try:
        return tuple(pkcs7.load_pem_pkcs7_certificates(data))
    except ValueError:
        return ()


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _key_encipherment(cert: x509.Certificate) -> bool:
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return usage.key_encipherment


def _pick_ca_and_recipient(
    certs: tuple[x509.Certificate, ...],
) -> tuple[x509.Certificate, x509.Certificate]:
    """(the issuing CA, the certificate to encrypt requests to)."""
    cas = [c for c in certs if _is_ca(c)] or [certs[0]]
    ras = [c for c in certs if not _is_ca(c) and _key_encipherment(c)]
    for ra in ras:
        for ca in cas:
            if _issued_by(ra, ca):
                return ca, ra
    # the lowest CA: one that issued no other CA of the set
    for ca in cas:
        if not any(other is not ca and _issued_by(other, ca) for other in cas):
            return ca, ca
    return cas[0], cas[0]


def _ancestors(ca: x509.Certificate, certs: Iterable[x509.Certificate]) -> list[x509.Certificate]:
    """``ca`` and the certificates above it in ``certs`` (by signature), lowest first."""
    pool = list(certs)
    path = [ca]
    while len(path) <= len(pool):
        current = path[-1]
        if current.issuer == current.subject:
            break
        parent = next((c for c in pool if c not in path and _issued_by(current, c)), None)
        if parent is None:
            break
        path.append(parent)
    return path


def _check_pin(
    fingerprint: str,
    certs: tuple[x509.Certificate, ...],
    ca: x509.Certificate,
    recipient: x509.Certificate,
    *,
    url: str,
) -> None:
    pinned = [c for c in certs if _fingerprint_of(c, len(fingerprint)) == fingerprint]
    trusted = [recipient, *_ancestors(ca, certs)]
    if any(c in trusted for c in pinned):
        return
    algorithm = "SHA-256" if len(fingerprint) == 64 else "SHA-1"
    actual = "; ".join(
        f"SHA-256 {_sha256_hex(c)}"
        + (f" (SHA-1 {_sha1_hex(c)})" if len(fingerprint) == 40 else "")
        + f" for {c.subject.rfc4514_string() or '(empty subject)'}"
        for c in certs
    )
    if pinned:
        reason = ("the pinned certificate is there, but it is neither the CA that issues nor a "
                  "certificate above it")
    else:
        reason = "the server's CA is not the pinned one"
    raise ScepError(
        f"SCEP server {url}: CA fingerprint mismatch ({reason}): expected {algorithm} "
        f"{fingerprint}, the server sent {actual}. Nothing was sent to the server but "
        "GetCACert; check the fingerprint with the CA's administrator"
    )
