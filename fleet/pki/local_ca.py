"""fleet.pki.local_ca — a small certificate authority for labs and demos.

:func:`create_ca` makes a root in memory (tests, the demo). :func:`init_local_ca` makes one on
disk — ``ca.pem`` (the certificate) and ``ca.key`` (its key, PKCS#8 encrypted with a passphrase,
mode 0600) — and :func:`load_local_ca` reads it back. :meth:`LocalCa.sign_csr` issues device
certificates that fit every RoomOS purpose: serverAuth + clientAuth, the CSR's subject and SANs,
at most as long-lived as the CA.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..errors import InputError, PemError
from ..files import read_file
from .certs import parse_pem_certificates
from .checks import is_ca, normalize_purposes
from .keys import (
    PrivateKey,
    generate_key,
    key_to_pem,
    load_key_pem,
    same_public_key,
    write_atomic,
    write_private_key,
)

if TYPE_CHECKING:
    from ..secrets import Secret

__all__ = [
    "CA_CERT_FILE",
    "CA_KEY_FILE",
    "CA_KEY_KINDS",
    "LocalCa",
    "create_ca",
    "init_local_ca",
    "load_ca_certificate",
    "load_local_ca",
]

CA_CERT_FILE: Final = "ca.pem"
CA_KEY_FILE: Final = "ca.key"
#: key kinds a local CA may have (RSA-2048 is too small for a CA meant to last ten years)
CA_KEY_KINDS: Final = ("ec-p256", "ec-p384", "rsa-3072", "rsa-4096")
MIN_PASSPHRASE: Final = 8
#: the largest CA certificate or key file read (each is a few KiB)
MAX_CA_FILE: Final = 1024 * 1024
_BACKDATE: Final = dt.timedelta(minutes=5)


def _hash_for(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384:
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size >= 384:
        return hashes.SHA384()
    return hashes.SHA256()


@dataclass(frozen=True)
class LocalCa:
    cert: x509.Certificate
    key: PrivateKey
    #: the folder of ca.pem / ca.key, for a CA made by init_local_ca / load_local_ca
    directory: Path | None = None

    @property
    def cert_pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode("ascii")

    def sign_csr(
        self,
        csr: x509.CertificateSigningRequest,
        *,
        days: int = 365,
        purposes: Sequence[str] = (),
        now: dt.datetime | None = None,
    ) -> x509.Certificate:
        """Issue a device certificate for ``csr``.

        The CSR's signature must verify; its subject and subjectAltNames are copied. The
        certificate gets keyUsage digitalSignature (+ keyEncipherment for RSA keys), extended
        key usage serverAuth + clientAuth (which fit every RoomOS purpose; ``purposes`` are only
        checked to be known), AKI/SKI, CA:FALSE, a random serial, and a validity from five
        minutes ago to ``days`` from now, cut at the CA's own notAfter. InputError otherwise.
        """
        normalize_purposes(purposes)
        now = now or dt.datetime.now(dt.UTC)
        if days < 1:
            raise InputError(f"a certificate must be valid for at least one day, not {days}")
        ca_end = self.cert.not_valid_after_utc
        if ca_end <= now:
            raise InputError(f"the local CA expired on {ca_end:%Y-%m-%d %H:%M} UTC")
        public, san = _checked_csr(csr)
        builder = (
            x509.CertificateBuilder()
            .subject_name(csr.subject)
            .issuer_name(self.cert.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(min(now + dt.timedelta(days=days), ca_end))
        )
        for extension, critical in _device_extensions(public, self._ski()):
            builder = builder.add_extension(extension, critical=critical)
        if san is not None:
            builder = builder.add_extension(san.value, critical=san.critical)
        return builder.sign(self.key, _hash_for(self.key))

    def _ski(self) -> x509.SubjectKeyIdentifier:
        try:
            return self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        except x509.ExtensionNotFound:
            return x509.SubjectKeyIdentifier.from_public_key(self.key.public_key())


def _checked_csr(
    csr: x509.CertificateSigningRequest,
) -> tuple[rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
           x509.Extension[x509.SubjectAlternativeName] | None]:
    """The CSR's public key and subjectAltName extension, once the CSR is fit to sign:
    its signature verifies, its key is RSA (2048 bits at least) or EC, and it names someone."""
    if not csr.is_signature_valid:
        raise InputError("the CSR's signature does not verify (altered or corrupt CSR)")
    public = csr.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        if public.key_size < 2048:
            raise InputError(f"the CSR's RSA key has {public.key_size} bits; 2048 at least")
    elif not isinstance(public, ec.EllipticCurvePublicKey):
        raise InputError(
            f"the CSR's key is a {type(public).__name__}; RoomOS devices use RSA or EC keys"
        )
    try:
        san: x509.Extension[x509.SubjectAlternativeName] | None = \
            csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        san = None
    if not len(csr.subject) and san is None:
        raise InputError("the CSR has neither a subject nor a subjectAltName")
    return public, san


def _device_extensions(
    public: rsa.RSAPublicKey | ec.EllipticCurvePublicKey, ca_ski: x509.SubjectKeyIdentifier,
) -> list[tuple[x509.ExtensionType, bool]]:
    """(extension, critical) of a device certificate: CA:FALSE, digitalSignature (+
    keyEncipherment for RSA), serverAuth + clientAuth, SKI and the CA's AKI."""
    return [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (x509.KeyUsage(
            digital_signature=True, content_commitment=False,
            key_encipherment=isinstance(public, rsa.RSAPublicKey), data_encipherment=False,
            key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False,
            decipher_only=False,
        ), True),
        (x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        ), False),
        (x509.SubjectKeyIdentifier.from_public_key(public), False),
        (x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), False),
    ]


def _ca_certificate(
    key: PrivateKey,
    common_name: str,
    organization: str | None,
    days: int,
    now: dt.datetime,
) -> x509.Certificate:
    attrs = []
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    name = x509.Name(attrs)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, _hash_for(key))
    )


def create_ca(
    common_name: str,
    *,
    organization: str | None = None,
    days: int = 3650,
    now: dt.datetime | None = None,
    key_kind: str = "ec-p256",
) -> LocalCa:
    """A self-signed root in memory: CA:TRUE, pathlen 1, keyCertSign + cRLSign."""
    now = now or dt.datetime.now(dt.UTC)
    key = generate_key(key_kind)
    return LocalCa(cert=_ca_certificate(key, common_name, organization, days, now), key=key)


def init_local_ca(
    directory: str | Path,
    *,
    common_name: str,
    organization: str | None = None,
    key_kind: str = "ec-p256",
    days: int = 3650,
    passphrase: Secret,
    now: dt.datetime | None = None,
) -> LocalCa:
    """Make a CA in ``directory``: ``ca.pem`` and ``ca.key`` (encrypted, mode 0600).

    Refuses (InputError) to overwrite a CA that is already there, a key kind outside
    :data:`CA_KEY_KINDS`, and a passphrase shorter than 8 characters.
    """
    folder = Path(directory)
    if key_kind not in CA_KEY_KINDS:
        raise InputError(
            f"a local CA key must be one of {', '.join(CA_KEY_KINDS)}, not {key_kind!r}"
        )
    if days < 1:
        raise InputError(f"a CA must be valid for at least one day, not {days}")
    if not common_name.strip():
        raise InputError("the CA needs a common name (--cn)")
    if len(passphrase.reveal()) < MIN_PASSPHRASE:
        raise InputError(
            f"the CA key passphrase is shorter than {MIN_PASSPHRASE} characters; use a longer one"
        )
    cert_path, key_path = folder / CA_CERT_FILE, folder / CA_KEY_FILE
    for path in (cert_path, key_path):
        if path.exists() or path.is_symlink():
            raise InputError(
                f"{path} exists: {folder} already holds a CA; refusing to overwrite it "
                "(use another directory, or move the old CA away yourself)"
            )
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder} is not a directory")
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create {folder}: {exc.strerror or exc}") from None
    ca = create_ca(common_name, organization=organization, days=days, now=now,
                   key_kind=key_kind)
    try:
        write_private_key(key_path, key_to_pem(ca.key, passphrase), overwrite=False)
    except FileExistsError:
        raise InputError(f"{key_path} appeared while the CA was made; not overwriting it") from None
    try:
        write_atomic(cert_path, ca.cert_pem.encode("ascii"), mode=0o644, overwrite=False)
    except BaseException:
        os.unlink(key_path)
        raise
    return LocalCa(cert=ca.cert, key=ca.key, directory=folder)


def load_local_ca(directory: str | Path, passphrase: Secret) -> LocalCa:
    """Read a CA made by :func:`init_local_ca`; InputError (never quoting the passphrase) when
    it is missing, damaged, or the passphrase is wrong."""
    folder = Path(directory)
    cert_path, key_path = folder / CA_CERT_FILE, folder / CA_KEY_FILE
    cert = load_ca_certificate(folder)
    try:
        key_data = read_file(key_path, limit=MAX_CA_FILE)
    except FileNotFoundError:
        raise InputError(f"{key_path} does not exist: the CA key is missing") from None
    except OSError as exc:
        raise InputError(f"cannot read {key_path}: {exc.strerror or exc}") from None
    try:
        key = load_key_pem(key_data, passphrase, source=str(key_path))
    except PemError as exc:
        if "wrong passphrase" in exc.reason:
            raise InputError(
                f"{key_path}: wrong passphrase for the CA key (the key cannot be decrypted)"
            ) from None
        raise
    if not same_public_key(cert, key):
        raise InputError(f"{key_path} is not the key of {cert_path}")
    return LocalCa(cert=cert, key=key, directory=folder)


def load_ca_certificate(directory: str | Path) -> x509.Certificate:
    """The certificate (``ca.pem``) of a local CA; no passphrase needed."""
    cert_path = Path(directory) / CA_CERT_FILE
    try:
        data = read_file(cert_path, limit=MAX_CA_FILE)
    except FileNotFoundError:
        raise InputError(
            f"{cert_path} does not exist: no local CA in {directory} "
            "(make one with `certfleet ca init --dir DIR`)"
        ) from None
    except OSError as exc:
        raise InputError(f"cannot read {cert_path}: {exc.strerror or exc}") from None
    certs = parse_pem_certificates(data, source=str(cert_path))
    if len(certs) != 1 or not is_ca(certs[0]):
        raise PemError("must hold exactly one CA certificate", file=str(cert_path))
    return certs[0]
