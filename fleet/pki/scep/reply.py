"""fleet.pki.scep.reply — reading a CertRep: its signature (by the CA or an RA the CA issued),
messageDigest, messageType, transactionID and recipientNonce, its status, and the certificate
taken from the *encrypted* part (never the clear-text copies some servers add)."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from asn1crypto import cms  # type: ignore[import-untyped]
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs7

from ...errors import ScepError
from .ca import CaInfo, _issued_by
from .csr import _spki
from .envelope import decrypt_enveloped
from .message import (
    _HASHES,
    _MSG_CERTREP,
    _OID_CONTENT_TYPE,
    _OID_DATA,
    _OID_MESSAGE_DIGEST,
    _STATUS_FAILURE,
    _STATUS_PENDING,
    _STATUS_SUCCESS,
    FAIL_INFO,
    OID_FAIL_INFO,
    OID_MESSAGE_TYPE,
    OID_PKI_STATUS,
    OID_RECIPIENT_NONCE,
    OID_TRANSACTION_ID,
    _Request,
)


def _values(signed_attrs: Iterable[object]) -> dict[str, object]:
    """The first value of every signed attribute, by dotted OID, as asn1crypto natives."""
    out: dict[str, object] = {}
    for attribute in signed_attrs:
        oid = attribute["type"].dotted  # type: ignore[index]
        values = attribute["values"]  # type: ignore[index]
        if oid in out:
            raise ScepError(f"the CertRep has the signed attribute {oid} twice")
        if len(values) != 1:
            raise ScepError(f"the CertRep's signed attribute {oid} has {len(values)} values")
        out[oid] = values[0].native
    return out


def _text(values: dict[str, object], oid: str, name: str) -> str | None:
    value = values.get(oid)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ScepError(f"the CertRep's {name} is not a string")
    return value


def _octets(values: dict[str, object], oid: str, name: str) -> bytes | None:
    value = values.get(oid)
    if value is None:
        return None
    if not isinstance(value, bytes):
        raise ScepError(f"the CertRep's {name} is not an OCTET STRING")
    return value


def _find_signer(sid: object, ca: CaInfo) -> x509.Certificate:
    """The CA/RA certificate that signed the CertRep: only certificates from GetCACert that
    are the CA or were issued by it count (never one the reply brings along)."""
    choice = sid.name  # type: ignore[attr-defined]
    wanted = sid.chosen  # type: ignore[attr-defined]
    for cert in ca.certs:
        if cert is not ca.ca and not _issued_by(cert, ca.ca):
            continue
        if choice == "issuer_and_serial_number":
            parsed = asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
            if (parsed.issuer == wanted["issuer"]
                    and parsed.serial_number == wanted["serial_number"].native):
                return cert
        elif choice == "subject_key_identifier":
            try:
                ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            except x509.ExtensionNotFound:
                continue
            if ski.value.digest == wanted.native:
                return cert
    raise ScepError("the CertRep is not signed by the CA (or an RA the CA issued) that "
                    "GetCACert returned")


def _verify_signature(cert: x509.Certificate, signature: bytes, data: bytes,
                      digest: str, algorithm: str) -> None:
    hash_cls = _HASHES.get(digest)
    if hash_cls is None:
        raise ScepError(f"the CertRep uses the digest {digest}, which is not accepted")
    public = cert.public_key()
    try:
        if isinstance(public, rsa.RSAPublicKey) and algorithm != "rsassa_pss":
            public.verify(signature, data, padding.PKCS1v15(), hash_cls())
        elif isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(signature, data, ec.ECDSA(hash_cls()))
        else:
            raise ScepError(f"the CertRep's signature algorithm {algorithm} is not supported")
    except InvalidSignature:
        raise ScepError("the CertRep's signature does not verify with the CA/RA certificate "
                        "(altered on the way, or not from this CA)") from None


def _signed_content(data: bytes, ca: CaInfo) -> tuple[str, dict[str, object], bytes]:
    """(digest algorithm, signed attributes, content) of a CertRep whose signature verifies
    with the CA or an RA the CA issued."""
    try:
        info = cms.ContentInfo.load(data)
        if info["content_type"].native != "signed_data":
            raise ScepError(f"the PKIOperation answer is a PKCS#7 {info['content_type'].native}, "
                            "not signedData")
        signed_data = info["content"]
        signer_infos = list(signed_data["signer_infos"])
        if len(signer_infos) != 1:
            raise ScepError(f"the CertRep has {len(signer_infos)} signers, not one")
        signer_info = signer_infos[0]
        signer = _find_signer(signer_info["sid"], ca)
        attrs = signer_info["signed_attrs"]
        if attrs.contents is None or not len(attrs):
            raise ScepError("the CertRep has no signed attributes")
        raw_attrs: bytes = attrs.dump()
        digest = signer_info["digest_algorithm"]["algorithm"].native
        algorithm = signer_info["signature_algorithm"]["algorithm"].native
        # signed as a SET OF (0x31), stored as [0] IMPLICIT (0xA0): swap the tag back
        _verify_signature(signer, signer_info["signature"].native, b"\x31" + raw_attrs[1:],
                          digest, algorithm)
        values = _values(attrs)
        content = signed_data["encap_content_info"]["content"].native
    except (ValueError, TypeError, KeyError) as exc:
        raise ScepError(f"the PKIOperation answer is not a valid pkiMessage ({exc})") from None
    if content is not None and not isinstance(content, bytes):
        raise ScepError("the CertRep's content is not an OCTET STRING")
    return digest, values, content or b""


def _read_cert_rep(
    data: bytes, request: _Request, ca: CaInfo, key: rsa.RSAPrivateKey
) -> tuple[x509.Certificate, tuple[x509.Certificate, ...]]:
    """Check a CertRep (signature, digest, type, transaction, nonce) and take its certificate:
    the one for ``key`` from the *decrypted* content, never the outer clear-text copies."""
    digest, values, content_bytes = _signed_content(data, ca)
    hasher = hashes.Hash(_HASHES[digest]())
    hasher.update(content_bytes)
    message_digest = _octets(values, _OID_MESSAGE_DIGEST, "messageDigest")
    if message_digest is None or not hmac.compare_digest(message_digest, hasher.finalize()):
        raise ScepError("the CertRep's messageDigest does not match its content "
                        "(altered on the way)")
    content_type = values.get(_OID_CONTENT_TYPE)
    if content_type not in (None, "data", _OID_DATA):
        raise ScepError(f"the CertRep's contentType is {content_type}, not data")
    message_type = _text(values, OID_MESSAGE_TYPE, "messageType")
    if message_type != _MSG_CERTREP:
        raise ScepError(f"the answer has messageType {message_type}, not CertRep (3)")
    if _text(values, OID_TRANSACTION_ID, "transactionID") != request.transaction_id:
        raise ScepError("the CertRep's transactionID is not the request's")
    recipient_nonce = _octets(values, OID_RECIPIENT_NONCE, "recipientNonce")
    if recipient_nonce is None or not hmac.compare_digest(recipient_nonce, request.nonce):
        raise ScepError("the CertRep's recipientNonce is not the request's senderNonce "
                        "(a replayed or misrouted answer)")

    status = _text(values, OID_PKI_STATUS, "pkiStatus")
    if status == _STATUS_FAILURE:
        code = _text(values, OID_FAIL_INFO, "failInfo")
        name, meaning = FAIL_INFO.get(code or "", (None, "no reason given"))
        label = name or (f"failInfo {code}" if code else "no failInfo")
        raise ScepError(f"the CA refused the request: FAILURE {label} ({meaning})",
                        fail_info=name)
    if status == _STATUS_PENDING:
        raise ScepError(
            f"the request is pending (transaction {request.transaction_id}): the CA wants to "
            "approve it by hand, and polling is not supported; have the CA issue "
            "automatically for this profile"
        )
    if status != _STATUS_SUCCESS:
        raise ScepError(f"the CertRep has an unknown pkiStatus {status!r}")
    if not content_bytes:
        raise ScepError("the CertRep says SUCCESS but carries no content")
    return _pick_issued(_decrypt_reply(content_bytes, request, key), key, ca)


def _load_degenerate(data: bytes) -> list[x509.Certificate]:
    """The certificates of a certs-only SignedData (DER; BER through asn1crypto)."""
    try:
        return pkcs7.load_der_pkcs7_certificates(data)
    except ValueError:
        info = cms.ContentInfo.load(data)
        certs = info["content"]["certificates"]
        return [x509.load_der_x509_certificate(c.chosen.dump()) for c in certs]


def _pick_issued(
    certs: list[x509.Certificate], key: rsa.RSAPrivateKey, ca: CaInfo
) -> tuple[x509.Certificate, tuple[x509.Certificate, ...]]:
    """The certificate for ``key`` (issued by the CA) and the chain: the others, then the CA."""
    ours = _spki(key.public_key())
    issued = next((c for c in certs if _spki(c.public_key()) == ours), None)
    if issued is None:
        raise ScepError(f"the CertRep's {len(certs)} certificate(s) hold none for our key")
    if issued.issuer != ca.ca.subject or not _issued_by(issued, ca.ca):
        raise ScepError(
            f"the issued certificate's issuer {issued.issuer.rfc4514_string() or '(empty)'} is "
            f"not the SCEP CA {ca.ca.subject.rfc4514_string() or '(empty subject)'}, or its "
            "signature does not verify with the CA's key"
        )
    chain: list[x509.Certificate] = []
    for cert in [*certs, ca.ca]:
        if cert != issued and cert not in chain:
            chain.append(cert)
    return issued, tuple(chain)


def _decrypt_reply(enveloped: bytes, request: _Request,
                   key: rsa.RSAPrivateKey) -> list[x509.Certificate]:
    try:
        plain = decrypt_enveloped(enveloped, key, request.signer)
    except ValueError as exc:
        raise ScepError(f"the CertRep cannot be decrypted: {exc}") from None
    try:
        return _load_degenerate(plain)
    except (ValueError, KeyError, TypeError) as exc:
        raise ScepError(f"the CertRep's decrypted content holds no certificates ({exc})") from None
