"""fleet.pki.scep.message — the pkiMessage of a PKCSReq (RFC 8894 §3): a CMS SignedData with the
SCEP signed attributes, signed by a throw-away self-signed certificate of the CSR's key, around
an EnvelopedData of the CSR; and the SCEP constants the reply is read with."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from asn1crypto import cms, core  # type: ignore[import-untyped]
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from .ca import CaInfo
from .csr import _spki
from .envelope import _envelope, _issuer_and_serial

#: SCEP signed attributes (RFC 8894 §3.2.1), under id-VeriSign 2.16.840.1.113733.1.9
OID_MESSAGE_TYPE: Final = "2.16.840.1.113733.1.9.2"
OID_PKI_STATUS: Final = "2.16.840.1.113733.1.9.3"
OID_FAIL_INFO: Final = "2.16.840.1.113733.1.9.4"
OID_SENDER_NONCE: Final = "2.16.840.1.113733.1.9.5"
OID_RECIPIENT_NONCE: Final = "2.16.840.1.113733.1.9.6"
OID_TRANSACTION_ID: Final = "2.16.840.1.113733.1.9.7"
_OID_CONTENT_TYPE: Final = "1.2.840.113549.1.9.3"
_OID_MESSAGE_DIGEST: Final = "1.2.840.113549.1.9.4"
_OID_DATA: Final = "1.2.840.113549.1.7.1"

_MSG_PKCSREQ: Final = "19"
_MSG_CERTREP: Final = "3"
_STATUS_SUCCESS: Final = "0"
_STATUS_FAILURE: Final = "2"
_STATUS_PENDING: Final = "3"

#: failInfo codes (RFC 8894 §3.2.1.4) and what each usually means
FAIL_INFO: Final[dict[str, tuple[str, str]]] = {
    "0": ("badAlg", "the CA does not accept the algorithms of the request"),
    "1": ("badMessageCheck", "the CA could not verify the request's signature or integrity"),
    "2": ("badRequest", "a wrong or missing challenge password, a subject the CA will not "
                        "issue again, or a CSR its policy rejects; the server's log says which"),
    "3": ("badTime", "the request's signingTime is too far from the CA's clock"),
    "4": ("badCertId", "the CA does not know the certificate the request refers to"),
}

_HASHES: Final[dict[str, type[hashes.HashAlgorithm]]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


@dataclass(frozen=True)
class _Request:
    message: bytes
    transaction_id: str
    nonce: bytes
    signer: x509.Certificate
    digest: str
    cipher: str


def _transaction_id(key: rsa.RSAPrivateKey) -> str:
    """Hex SHA-256 of the key's SubjectPublicKeyInfo (RFC 8894 §3.2.1.1 suggests a key hash)."""
    return hashlib.sha256(_spki(key.public_key())).hexdigest()


def _signer_cert(key: rsa.RSAPrivateKey, subject: x509.Name, now: datetime) -> x509.Certificate:
    """The throw-away self-signed certificate that signs the pkiMessage (RFC 8894 §2.3)."""
    if not len(subject):
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SCEP client")])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=10))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=True,
            data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )


def _choose(ca: CaInfo) -> tuple[str, str]:
    """(digest, content cipher) for the request, from the caps."""
    standard = ca.has_cap("SCEPStandard")
    digest = "sha256" if standard or ca.has_cap("SHA-256") else "sha1"
    cipher = "aes128_cbc" if standard or ca.has_cap("AES") else "tripledes_3key"
    return digest, cipher


def _attribute(oid: str, value: object) -> object:
    return cms.CMSAttribute({"type": oid, "values": [value]})


def _build_pki_message(
    csr: x509.CertificateSigningRequest, key: rsa.RSAPrivateKey, ca: CaInfo
) -> _Request:
    """The PKCSReq pkiMessage: SignedData(EnvelopedData(CSR)) with the SCEP attributes."""
    now = datetime.now(UTC).replace(microsecond=0)
    digest, cipher = _choose(ca)
    signer = _signer_cert(key, csr.subject, now)
    transaction_id = _transaction_id(key)
    nonce = os.urandom(16)
    envelope = _envelope(csr.public_bytes(serialization.Encoding.DER), ca.recipient, cipher)
    hasher = hashes.Hash(_HASHES[digest]())
    hasher.update(envelope)
    signed_attrs = cms.CMSAttributes([
        _attribute(_OID_CONTENT_TYPE, cms.ContentType("data")),
        _attribute("1.2.840.113549.1.9.5", cms.Time({"utc_time": now})),  # signingTime
        _attribute(_OID_MESSAGE_DIGEST, core.OctetString(hasher.finalize())),
        _attribute(OID_MESSAGE_TYPE, core.PrintableString(_MSG_PKCSREQ)),
        _attribute(OID_TRANSACTION_ID, core.PrintableString(transaction_id)),
        _attribute(OID_SENDER_NONCE, core.OctetString(nonce)),
    ])
    # the signature covers the attributes DER-encoded as a SET OF (RFC 5652 §5.4), which is
    # how a CMSAttributes dumps on its own; inside SignerInfo the same bytes get the [0] tag
    signature = key.sign(signed_attrs.dump(), padding.PKCS1v15(), _HASHES[digest]())
    signer_info = cms.SignerInfo({
        "version": "v1",
        "sid": cms.SignerIdentifier({"issuer_and_serial_number": _issuer_and_serial(signer)}),
        "digest_algorithm": {"algorithm": digest},
        "signed_attrs": signed_attrs,
        "signature_algorithm": {"algorithm": "rsassa_pkcs1v15"},
        "signature": signature,
    })
    signed_data = cms.SignedData({
        "version": "v1",
        "digest_algorithms": [{"algorithm": digest}],
        "encap_content_info": {"content_type": "data", "content": envelope},
        "certificates": [
            asn1_x509.Certificate.load(signer.public_bytes(serialization.Encoding.DER))
        ],
        "signer_infos": [signer_info],
    })
    message: bytes = cms.ContentInfo({"content_type": "signed_data",
                                      "content": signed_data}).dump()
    return _Request(message=message, transaction_id=transaction_id, nonce=nonce,
                    signer=signer, digest=digest, cipher=cipher)
