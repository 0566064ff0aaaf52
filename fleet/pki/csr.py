"""fleet.pki.csr — certificate signing requests built from a device's rendered template.

A CSR carries the subject in the order C, ST, L, O, OU, CN, a subjectAltName extension with the
DNS names, IP addresses, e-mail addresses and URIs of the template, and a SHA-256 signature. It
has no challenge password: the signers that need one (SCEP) add it themselves.
"""

from __future__ import annotations

import ipaddress
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from ..errors import InputError, PemError
from ..inventory import SUBJECT_KEYS, RenderedCertificate
from .keys import PrivateKey

__all__ = [
    "SUBJECT_OIDS",
    "build_csr",
    "csr_pem",
    "load_csr_pem",
    "san_strings",
    "subject_alt_names",
]

SUBJECT_OIDS: Final = {
    "C": NameOID.COUNTRY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "L": NameOID.LOCALITY_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "CN": NameOID.COMMON_NAME,
}


def _subject(rendered: RenderedCertificate) -> x509.Name:
    order = {attr: index for index, attr in enumerate(SUBJECT_KEYS)}
    attributes: list[x509.NameAttribute[str]] = []
    for attr, value in sorted(rendered.subject, key=lambda item: order.get(item[0], 99)):
        if attr not in SUBJECT_OIDS:
            raise InputError(f"unknown subject attribute {attr!r}; use {', '.join(SUBJECT_KEYS)}")
        if attr == "C":
            value = value.upper()
            if len(value) != 2 or not value.isascii() or not value.isalpha():
                raise InputError(
                    f"subject C must be a two-letter country code (ISO 3166), like NO or US; "
                    f"got {value!r}"
                )
        if not value:
            raise InputError(f"subject {attr} is empty")
        attributes.append(x509.NameAttribute(SUBJECT_OIDS[attr], value))
    return x509.Name(attributes)


def _general_names(rendered: RenderedCertificate) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(v) for v in rendered.san_dns]
    for value in rendered.san_ip:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(value)))
        except ValueError:
            raise InputError(f"SAN IP {value!r} is not an IP address") from None
    names += [x509.RFC822Name(v) for v in rendered.san_email]
    names += [x509.UniformResourceIdentifier(v) for v in rendered.san_uri]
    return names


def build_csr(key: PrivateKey, rendered: RenderedCertificate) -> x509.CertificateSigningRequest:
    """A CSR for ``rendered`` signed with ``key`` (SHA-256). InputError for a bad subject."""
    subject = _subject(rendered)
    if not len(subject) and not (
        rendered.san_dns or rendered.san_ip or rendered.san_email or rendered.san_uri
    ):
        raise InputError("a CSR needs a subject or at least one subjectAltName")
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    names = _general_names(rendered)
    if names:
        # critical when the subject is empty (RFC 5280 4.2.1.6)
        builder = builder.add_extension(x509.SubjectAlternativeName(names),
                                        critical=not len(subject))
    return builder.sign(key, hashes.SHA256())


def csr_pem(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_bytes(serialization.Encoding.PEM)


def load_csr_pem(data: bytes, *, source: str) -> x509.CertificateSigningRequest:
    """The CSR in a PEM file; PemError (naming ``source``) if there is none or it is forged."""
    if b"-----BEGIN CERTIFICATE REQUEST-----" not in data and \
            b"-----BEGIN NEW CERTIFICATE REQUEST-----" not in data:
        raise PemError("is not a CSR (no -----BEGIN CERTIFICATE REQUEST----- block)", file=source)
    try:
        csr = x509.load_pem_x509_csr(data.replace(b"NEW CERTIFICATE REQUEST",
                                                  b"CERTIFICATE REQUEST"))
    except ValueError as exc:
        raise PemError(f"the CSR does not decode: {exc}", file=source) from None
    if not csr.is_signature_valid:
        raise PemError("the CSR's signature does not verify (altered or corrupt)", file=source)
    return csr


def subject_alt_names(
    item: x509.Certificate | x509.CertificateSigningRequest,
) -> list[x509.GeneralName]:
    """The subjectAltName entries of a certificate or CSR (empty when it has none)."""
    try:
        ext = item.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return list(ext.value)


def san_strings(item: x509.Certificate | x509.CertificateSigningRequest) -> list[str]:
    """The SANs in OpenSSL's notation: ``DNS:a.example``, ``IP:10.0.0.1``, ``email:``, ``URI:``."""
    out: list[str] = []
    for name in subject_alt_names(item):
        if isinstance(name, x509.DNSName):
            out.append(f"DNS:{name.value}")
        elif isinstance(name, x509.IPAddress):
            out.append(f"IP:{name.value}")
        elif isinstance(name, x509.RFC822Name):
            out.append(f"email:{name.value}")
        elif isinstance(name, x509.UniformResourceIdentifier):
            out.append(f"URI:{name.value}")
        else:
            out.append(f"{type(name).__name__}:{name.value}")
    return out
