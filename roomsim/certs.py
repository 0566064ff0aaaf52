"""X.509 helpers for the simulated devices: key/cert creation, PEM parsing, and the
field formats RoomOS prints in `CA Show` / `Services Show` (OpenSSL one-line names,
`Mon DD HH:MM:SS YYYY GMT` dates, lowercase hex fingerprints)."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import re
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    PrivateKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, SignatureAlgorithmOID

SIM_CA_COMMON_NAME = "roomsim device CA"
TEMPORARY_DEFAULT_ORG = "TemporaryDefaultCertificate"

_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL)
_KEY_LABELS = frozenset(
    {
        "PRIVATE KEY",
        "RSA PRIVATE KEY",
        "EC PRIVATE KEY",
        "ENCRYPTED PRIVATE KEY",
        "DSA PRIVATE KEY",
        "OPENSSH PRIVATE KEY",
    }
)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

_NAME_SHORT: dict[x509.ObjectIdentifier, str] = {
    NameOID.COUNTRY_NAME: "C",
    NameOID.STATE_OR_PROVINCE_NAME: "ST",
    NameOID.LOCALITY_NAME: "L",
    NameOID.ORGANIZATION_NAME: "O",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.COMMON_NAME: "CN",
    NameOID.EMAIL_ADDRESS: "emailAddress",
    NameOID.SERIAL_NUMBER: "serialNumber",
    NameOID.DOMAIN_COMPONENT: "DC",
    NameOID.USER_ID: "UID",
    NameOID.STREET_ADDRESS: "street",
    NameOID.TITLE: "title",
    NameOID.GIVEN_NAME: "GN",
    NameOID.SURNAME: "SN",
    NameOID.INITIALS: "initials",
    NameOID.POSTAL_CODE: "postalCode",
    NameOID.BUSINESS_CATEGORY: "businessCategory",
    NameOID.ORGANIZATION_IDENTIFIER: "organizationIdentifier",
    NameOID.PSEUDONYM: "pseudonym",
    NameOID.DN_QUALIFIER: "dnQualifier",
}

_SIGNATURE_NAMES: dict[x509.ObjectIdentifier, str] = {
    SignatureAlgorithmOID.RSA_WITH_MD5: "md5WithRSAEncryption",
    SignatureAlgorithmOID.RSA_WITH_SHA1: "sha1WithRSAEncryption",
    SignatureAlgorithmOID.RSA_WITH_SHA224: "sha224WithRSAEncryption",
    SignatureAlgorithmOID.RSA_WITH_SHA256: "sha256WithRSAEncryption",
    SignatureAlgorithmOID.RSA_WITH_SHA384: "sha384WithRSAEncryption",
    SignatureAlgorithmOID.RSA_WITH_SHA512: "sha512WithRSAEncryption",
    SignatureAlgorithmOID.RSASSA_PSS: "rsassaPss",
    SignatureAlgorithmOID.ECDSA_WITH_SHA1: "ecdsa-with-SHA1",
    SignatureAlgorithmOID.ECDSA_WITH_SHA224: "ecdsa-with-SHA224",
    SignatureAlgorithmOID.ECDSA_WITH_SHA256: "ecdsa-with-SHA256",
    SignatureAlgorithmOID.ECDSA_WITH_SHA384: "ecdsa-with-SHA384",
    SignatureAlgorithmOID.ECDSA_WITH_SHA512: "ecdsa-with-SHA512",
    SignatureAlgorithmOID.ED25519: "ED25519",
    SignatureAlgorithmOID.ED448: "ED448",
    SignatureAlgorithmOID.DSA_WITH_SHA1: "dsaWithSHA1",
    SignatureAlgorithmOID.DSA_WITH_SHA256: "dsa_with_SHA256",
}


class CertificateInputError(ValueError):
    """A PEM body that cannot be used; the message is the device's Reason text."""


@dataclass(frozen=True)
class PemBlock:
    label: str
    text: str

    @property
    def is_private_key(self) -> bool:
        return self.label in _KEY_LABELS


@dataclass(frozen=True)
class CertInfo:
    """One certificate with its PEM and both fingerprints (lowercase hex, no separators)."""

    cert: x509.Certificate
    pem: str
    fingerprint: str
    sha256: str
    #: the Details fields that do not depend on the request (see `detail_fields`)
    _details: dict[str, str] | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def of(cls, cert: x509.Certificate) -> CertInfo:
        return cls(
            cert=cert,
            pem=cert.public_bytes(serialization.Encoding.PEM).decode("ascii"),
            fingerprint=cert.fingerprint(hashes.SHA1()).hex(),
            sha256=cert.fingerprint(hashes.SHA256()).hex(),
        )

    @classmethod
    def from_pem(cls, pem: str) -> CertInfo:
        return cls.of(x509.load_pem_x509_certificate(pem.encode("ascii")))

    def matches(self, wanted: str) -> bool:
        """`wanted` must already be normalised with `normalize_fingerprint`."""
        return wanted in (self.fingerprint, self.sha256)

    def fingerprint_for(self, algorithm: str) -> str:
        return self.sha256 if algorithm == "SHA-256" else self.fingerprint


# --------------------------------------------------------------------------- creation


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def create_sim_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SIM_CA_COMMON_NAME)])
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def issue_server_cert(
    ca_cert: x509.Certificate,
    ca_key: CertificateIssuerPrivateKeyTypes,
    name: str,
    *,
    days: int = 397,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A TLS server certificate for a device: CN=name, SAN DNS:name, DNS:localhost, IP:127.0.0.1."""
    key = new_key()
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName(name),
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def temporary_default_cert(serial: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The self-signed certificate factory devices list as `O=TemporaryDefaultCertificate`."""
    key = new_key()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, TEMPORARY_DEFAULT_ORG),
            x509.NameAttribute(NameOID.COMMON_NAME, serial),
        ]
    )
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    return cert, key


def is_temporary_default(cert: x509.Certificate) -> bool:
    orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return any(attr.value == TEMPORARY_DEFAULT_ORG for attr in orgs)


def cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def key_pem(key: PrivateKeyTypes) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


#: OpenSSL's RSA consistency check costs ~36 ms per 2048-bit key, most of the simulator's
#: CPU in a rotation benchmark; the simulator checks what a device checks instead (the key
#: matches the certificate, `key_matches_cert`), and a key that is inconsistent inside
#: would still fail the first TLS handshake that uses it.
_LOAD = {"unsafe_skip_rsa_key_validation": True}


def load_key_pem(pem: str) -> PrivateKeyTypes:
    return serialization.load_pem_private_key(pem.encode("ascii"), password=None, **_LOAD)


# --------------------------------------------------------------------------- parsing


def pem_blocks(text: str) -> list[PemBlock]:
    """Every `-----BEGIN X-----` ... `-----END X-----` block, in order."""
    return [PemBlock(m.group(1), m.group(0)) for m in _PEM_BLOCK.finditer(text)]


def parse_certificate(block: PemBlock, position: int) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(block.text.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise CertificateInputError(
            f"Certificate {position} in the body is malformed and cannot be parsed"
        ) from exc


def load_private_key(block: PemBlock, password: str) -> PrivateKeyTypes:
    """Load a PKCS#8 or traditional PEM key, encrypted or not.

    A password given for a key that is not encrypted is ignored (tolerant choice)."""
    if block.label == "OPENSSH PRIVATE KEY":
        raise CertificateInputError("OpenSSH private keys are not supported; use PEM (PKCS#8)")
    data = block.text.encode("ascii", errors="replace")
    secret = password.encode("utf-8") if password else None
    try:
        key = serialization.load_pem_private_key(data, password=secret, **_LOAD)
    except TypeError as exc:
        if secret is None:
            raise CertificateInputError(
                "The private key is encrypted and no PrivateKeyPassword was given"
            ) from exc
        try:
            key = serialization.load_pem_private_key(data, password=None, **_LOAD)
        except (TypeError, ValueError) as inner:
            raise CertificateInputError("The private key cannot be parsed") from inner
    except ValueError as exc:
        if secret is not None and _is_encrypted(block):
            raise CertificateInputError(
                "Unable to decrypt the private key: wrong PrivateKeyPassword"
            ) from exc
        raise CertificateInputError("The private key is malformed and cannot be parsed") from exc
    except UnsupportedAlgorithm as exc:
        raise CertificateInputError(f"The private key cannot be used: {exc}") from exc
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise CertificateInputError("Unsupported private key type; use an RSA or EC key")
    return key


def _is_encrypted(block: PemBlock) -> bool:
    return block.label == "ENCRYPTED PRIVATE KEY" or "Proc-Type: 4,ENCRYPTED" in block.text


def key_matches_cert(key: PrivateKeyTypes, cert: x509.Certificate) -> bool:
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return bool(key.public_key().public_bytes(*spki) == cert.public_key().public_bytes(*spki))


def normalize_fingerprint(value: str) -> str:
    """Lowercase hex without separators: tolerant of case, colons, spaces and dashes."""
    return re.sub(r"[\s:\-]", "", value).lower()


# --------------------------------------------------------------------------- device formats


def openssl_oneline(name: x509.Name) -> str:
    """`/C=US/O=Let's Encrypt/CN=R3`: OpenSSL's one-line form (`X509_NAME_oneline`), entries
    in certificate order. Like OpenSSL, every entry gets its own "/", also the values of a
    multi-valued RDN (Go CAs such as scepserver put all OUs in one RDN)."""
    parts = []
    for rdn in name.rdns:
        for attr in rdn:
            label = _NAME_SHORT.get(attr.oid, attr.oid.dotted_string)
            value = attr.value if isinstance(attr.value, str) else attr.value.hex()
            parts.append(f"/{label}={value}")
    return "".join(parts)


def device_date(value: dt.datetime) -> str:
    """`Aug 08 03:04:26 2023 GMT` (English month, zero-padded day), as RoomOS prints it."""
    value = value.astimezone(dt.UTC)
    return f"{_MONTHS[value.month - 1]} {value:%d %H:%M:%S %Y} GMT"


def serial_hex(serial: int) -> str:
    text = f"{serial:X}"
    return text if len(text) % 2 == 0 else "0" + text


def signature_name(cert: x509.Certificate) -> str:
    oid = cert.signature_algorithm_oid
    return _SIGNATURE_NAMES.get(oid, oid.dotted_string)


def key_algorithm(cert: x509.Certificate) -> tuple[str, int]:
    """(OpenSSL key algorithm name, key size in bits)."""
    public = cert.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        return "rsaEncryption", public.key_size
    if isinstance(public, ec.EllipticCurvePublicKey):
        return "id-ecPublicKey", public.curve.key_size
    if isinstance(public, ed25519.Ed25519PublicKey):
        return "ED25519", 256
    if isinstance(public, ed448.Ed448PublicKey):
        return "ED448", 456
    if isinstance(public, dsa.DSAPublicKey):
        return "dsaEncryption", public.key_size
    return "unknown", 0


def detail_fields(info: CertInfo, fingerprint_algorithm: str = "SHA-1") -> dict[str, str]:
    """The fields of one `Details` item (without `UsedFor`), with the device's labels:
    `HashingAlgorithm` is the signature algorithm, `SignatureAlgorithm` the key algorithm."""
    fixed = info._details
    if fixed is None:
        # what a certificate's Details show whatever is asked: worked out once per certificate
        # (a device lists its store as it keeps it; every Services Show rendered the names and
        # dates anew)
        fixed = _fixed_fields(info.cert)
        object.__setattr__(info, "_details", fixed)
    return {"Fingerprint": info.fingerprint_for(fingerprint_algorithm), **fixed}


def _fixed_fields(cert: x509.Certificate) -> dict[str, str]:
    key_alg, key_size = key_algorithm(cert)
    return {
        "HashingAlgorithm": signature_name(cert),
        "IssuerName": openssl_oneline(cert.issuer),
        "PublicKeySize": str(key_size),
        "SerialNumber": serial_hex(cert.serial_number),
        "SignatureAlgorithm": key_alg,
        "SubjectName": openssl_oneline(cert.subject),
        "Version": str(cert.version.value + 1),
        "notAfter": device_date(cert.not_valid_after_utc),
        "notBefore": device_date(cert.not_valid_before_utc),
    }


def serial_number_for(name: str) -> str:
    """A deterministic Cisco-style serial: `FOC` + 8 uppercase alphanumerics."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    alphabet = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"
    return "FOC" + "".join(alphabet[b % len(alphabet)] for b in digest[:8])
