"""fleet.pki.scep.csr — the CSR of an enrollment, with the challenge password as its
challengePassword attribute."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import AttributeOID

from ...secrets import Secret

#: the extensionRequest attribute (PKCS#9), where a CSR's extensions live
_OID_EXTENSION_REQUEST: Final = x509.ObjectIdentifier("1.2.840.113549.1.9.14")


def build_scep_csr(
    key: rsa.RSAPrivateKey,
    subject: x509.Name,
    *,
    san: Sequence[x509.GeneralName] = (),
    challenge: Secret | None = None,
) -> x509.CertificateSigningRequest:
    """An RSA CSR (SHA-256) for ``subject`` with the SANs, and the challenge as its
    challengePassword attribute (UTF8String) when one is given."""
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("SCEP needs an RSA key: SCEP servers sign RSA requests only")
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if san:
        # critical when the subject is empty (RFC 5280 §4.2.1.6)
        builder = builder.add_extension(x509.SubjectAlternativeName(list(san)),
                                        critical=not len(subject))
    if challenge is not None:
        builder = builder.add_attribute(AttributeOID.CHALLENGE_PASSWORD,
                                        challenge.reveal().encode("utf-8"))
    return builder.sign(key, hashes.SHA256())


def csr_with_challenge(
    csr: x509.CertificateSigningRequest, key: rsa.RSAPrivateKey, challenge: Secret
) -> x509.CertificateSigningRequest:
    """``csr`` signed again by ``key`` with the same subject and extensions, plus ``challenge``
    as its challengePassword (replacing any it had). The signature hash is kept (SHA-256 when
    the CSR has none): SCEP servers copy it into the certificate.

    ValueError if ``key`` is not the CSR's key, or the CSR has attributes other than
    extensionRequest and challengePassword (they could not be carried over faithfully).
    """
    _check_key_matches(csr, key)
    builder = x509.CertificateSigningRequestBuilder().subject_name(csr.subject)
    for ext in csr.extensions:
        builder = builder.add_extension(ext.value, critical=ext.critical)
    for attribute in csr.attributes:
        if attribute.oid not in (AttributeOID.CHALLENGE_PASSWORD, _OID_EXTENSION_REQUEST):
            raise ValueError(
                f"the CSR carries the attribute {attribute.oid.dotted_string}, which cannot be "
                "carried over when the challenge password is added"
            )
    builder = builder.add_attribute(AttributeOID.CHALLENGE_PASSWORD,
                                    challenge.reveal().encode("utf-8"))
    algorithm = csr.signature_hash_algorithm
    if not isinstance(algorithm, hashes.SHA256 | hashes.SHA384 | hashes.SHA512):
        algorithm = hashes.SHA256()
    return builder.sign(key, algorithm)


def _check_key_matches(csr: x509.CertificateSigningRequest, key: rsa.RSAPrivateKey) -> None:
    if _spki(csr.public_key()) != _spki(key.public_key()):
        raise ValueError("the CSR's public key is not the key given: they must belong together")


def _spki(public: object) -> bytes:
    if not isinstance(public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise ValueError(f"unsupported public key type {type(public).__name__}")
    return public.public_bytes(serialization.Encoding.DER,
                               serialization.PublicFormat.SubjectPublicKeyInfo)


def _csr_challenge(csr: x509.CertificateSigningRequest) -> bytes | None:
    try:
        value = csr.attributes.get_attribute_for_oid(AttributeOID.CHALLENGE_PASSWORD).value
    except x509.AttributeNotFound:
        return None
    return value
