"""fleet.pki.scep — a SCEP client (RFC 8894): GetCACaps, GetCACert and enrollment (PKCSReq).

One client for every SCEP user in the project: certfleet's ``scep`` signer, and roomsim when a
simulated device enrolls. It takes plain inputs (a URL, a CSR, an RSA key), nothing from the
inventory.

Trust. The CA is pinned by the SHA-256 (or SHA-1) fingerprint of its certificate's DER, as
``scepclient -ca-fingerprint`` takes it. :meth:`ScepClient.get_ca` may run without one, to show
the fingerprint to an administrator; :meth:`ScepClient.enroll` refuses to run without one, and
when the pin does not match, nothing but GetCACert has been sent. The reply (CertRep) must be
signed by the pinned CA or an RA certificate the CA issued; its messageDigest, messageType,
transactionID and recipientNonce are checked, and the certificate is taken from the *encrypted*
part of the reply and must carry our key and be issued by the CA. (Some servers also put the
issued certificate in clear into the outer SignedData; that copy is never used.)

The request. A pkiMessage (PKCSReq, messageType 19): a CMS SignedData, signed by a throw-away
self-signed certificate of the CSR's key (included, because the server encrypts its answer to
it), around an EnvelopedData of the CSR encrypted to the CA/RA certificate. Per the server's
GetCACaps: AES-128-CBC if it says ``AES`` or ``SCEPStandard`` (RFC 8894 §3.5.2: "AES" is
AES128-CBC), else 3DES-CBC; SHA-256 if it says ``SHA-256`` or ``SCEPStandard``, else SHA-1;
HTTP POST if it says ``POSTPKIOperation`` or ``SCEPStandard``, else GET with the message in
standard base64, %-encoded. The AES envelope comes from ``cryptography``'s
``PKCS7EnvelopeBuilder``; the 3DES one and the SignedData (whose SCEP signed attributes
``cryptography`` cannot add) are built with ``asn1crypto``.

The reply. Real servers answer with what they like, not with what they advertise: micromdm's
scepserver 2.1.0 (Debian's ``scep``) always answers with single DES-CBC and SHA-1, and its
EnvelopedData carries ``encryptedContent`` as a BER *constructed* ``[0]``, which neither
``cryptography`` nor ``asn1crypto`` read. So the EnvelopedData is walked TLV by TLV here, the
content-encryption key unwrapped with RSA PKCS#1 v1.5, and DES-CBC (as 3DES with the key
repeated three times), 3DES-CBC or AES-CBC decrypted by hand.

Errors are :class:`~fleet.errors.ScepError`: unreachable server, HTTP errors (with the server's
own text), a CA that is not the pinned one, a FAILURE reply (``fail_info`` is the RFC name:
badAlg, badMessageCheck, badRequest, badTime, badCertId), PENDING (polling is not supported), or
a reply that does not check out. Bad *inputs* (a CSR that does not match the key, a challenge
that is not in the CSR) are ``ValueError``. The challenge password never appears in an error or
a log line: it is registered with :func:`fleet.secrets.register_secret`, and no message here is
built from the CSR's attributes anyway.

Enrollments to one server are serialised within the process (:func:`_serialised`): scepserver
2.1.0 keeps its serial number and index.txt in files without a lock, and concurrent PKCSReqs get
duplicate serials and a corrupt index (seen with 20 at once; fixed upstream in 2.2.0). Fleets
enroll in parallel, so the lock is here, in the one client, rather than in every caller.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import hmac
import logging
import os
import re
import ssl
import threading
import time
import weakref
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Final, NamedTuple

import httpx
from asn1crypto import cms, core  # type: ignore[import-untyped]
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import AttributeOID, NameOID

from fleet.errors import ScepError
from fleet.secrets import Secret, redact, register_secret

__all__ = [
    "FAIL_INFO",
    "CaInfo",
    "EnrollResult",
    "EnvelopedParts",
    "ScepClient",
    "Tlv",
    "build_scep_csr",
    "csr_with_challenge",
    "decrypt_content",
    "decrypt_enveloped",
    "normalise_fingerprint",
    "octet_string_value",
    "read_tlv",
    "split_enveloped_data",
    "tlv_children",
]

_log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------- constants

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
#: the extensionRequest attribute (PKCS#9), where a CSR's extensions live
_OID_EXTENSION_REQUEST: Final = x509.ObjectIdentifier("1.2.840.113549.1.9.14")
#: DER contents of the OID 1.2.840.113549.1.7.3 (envelopedData)
_ENVELOPED_DATA_OID: Final = bytes.fromhex("2a864886f70d010703")

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

_CONTENT_TYPES_CERTS: Final = ("application/x-x509-ca-ra-cert",)
_MAX_TLV_DEPTH: Final = 32


# ------------------------------------------------------------------------------- results


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


@dataclass(frozen=True)
class EnrollResult:
    #: the issued certificate (taken from the decrypted reply)
    cert: x509.Certificate
    #: the other certificates of the reply, then the CA (leaf not included)
    chain: tuple[x509.Certificate, ...]
    transaction_id: str
    #: the whole enroll() call, including GetCACaps/GetCACert and the wait for the lock
    duration_ms: float


# ---------------------------------------------------------------------------- fingerprint


def normalise_fingerprint(text: str) -> str:
    """A SHA-256 (64 hex digits) or SHA-1 (40) fingerprint, lowercase, without colons/spaces.

    ``AB:CD:...`` (``openssl x509 -fingerprint``) and ``ab cd ...`` are accepted. ValueError for
    anything else (MD5 included).
    """
    digits = re.sub(r"[\s:]", "", text).lower()
    if len(digits) not in (40, 64) or re.fullmatch(r"[0-9a-f]*", digits) is None:
        raise ValueError(
            "a CA fingerprint is the SHA-256 (64 hex digits) or SHA-1 (40 hex digits) of the CA "
            "certificate's DER, e.g. from `openssl x509 -in ca.pem -noout -fingerprint -sha256`"
        )
    return digits


def _sha256_hex(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _sha1_hex(cert: x509.Certificate) -> str:
    return hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _fingerprint_of(cert: x509.Certificate, length: int) -> str:
    return _sha256_hex(cert) if length == 64 else _sha1_hex(cert)


# ----------------------------------------------------------------------------------- CSR


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


# ----------------------------------------------------------------------------- the lock

_LOCK_GUARD: Final = threading.Lock()
#: one per server origin, process-wide: what actually serialises, across threads and loops
_SERVER_LOCKS: dict[str, threading.Lock] = {}
#: one per (event loop, server origin): a fair FIFO queue in front of the threading lock, so
#: that within one loop waiting costs nothing (only the head of the queue tries the lock)
_LOOP_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def _origin(url: httpx.URL) -> str:
    port = url.port or {"http": 80, "https": 443}.get(url.scheme, 0)
    return f"{url.scheme}://{url.host}:{port}"


@contextlib.asynccontextmanager
async def _serialised(origin: str) -> AsyncIterator[None]:
    """Hold the process-wide lock of one SCEP server (by origin) for one PKIOperation.

    Why: scepserver 2.1.0 (Debian bookworm's ``scep``) writes its serial file and index.txt
    without a lock, so simultaneous enrollments get duplicate serial numbers and lose index
    lines (runbook §7, pitfall P11). Keyed by origin, not by full URL, since two paths on one
    host are one depot. It spans threads and event loops (certfleet and a roomsim fleet thread
    enrolling against one server in one test process): an ``asyncio.Lock`` per loop queues the
    tasks of that loop, and the head of each queue takes a ``threading.Lock`` without ever
    blocking the loop (non-blocking attempts with a short back-off; cancellation leaves nothing
    held). Processes are not covered: two certfleet runs against one 2.1.0 server can still
    collide.
    """
    loop = asyncio.get_running_loop()
    with _LOCK_GUARD:
        server_lock = _SERVER_LOCKS.setdefault(origin, threading.Lock())
        loop_lock = _LOOP_LOCKS.setdefault(loop, {}).setdefault(origin, asyncio.Lock())
    async with loop_lock:
        delay = 0.0005
        while not server_lock.acquire(blocking=False):
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.01)
        try:
            yield
        finally:
            server_lock.release()


# ----------------------------------------------------------------------------- the client


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The system's default TLS context, made once: httpx would build (and load CAs into) a new
    one for every client, 20-80 ms of CPU on the event loop each, and the scep signer makes a
    client per device. (TLS is not what protects SCEP: the pinned CA is.)"""
    return ssl.create_default_context()


class ScepClient:
    """A SCEP client for one server URL (e.g. ``http://ca.example:8080/scep``)."""

    def __init__(
        self,
        url: str,
        *,
        ca_fingerprint: str | None = None,
        timeout: float = 30.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise ScepError(f"SCEP URL {url!r} is not a URL: {exc}") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ScepError(f"SCEP URL {url!r} must be http:// or https:// with a host")
        try:
            self._fingerprint = (normalise_fingerprint(ca_fingerprint)
                                 if ca_fingerprint is not None else None)
        except ValueError as exc:
            raise ScepError(f"SCEP CA fingerprint for {url}: {exc}") from None
        self.url = url
        self.timeout = timeout
        self._url = parsed
        self._origin = _origin(parsed)
        self._own_client = client is None
        self._client = client if client is not None else httpx.AsyncClient(
            timeout=timeout, follow_redirects=False, trust_env=False, verify=_tls_context()
        )
        self._ca: CaInfo | None = None
        #: one GetCACert at a time when many enroll() calls start together on this client
        self._ca_lock = asyncio.Lock()

    async def __aenter__(self) -> ScepClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client, if this object made it (a client passed in stays open)."""
        if self._own_client:
            await self._client.aclose()

    # ------------------------------------------------------------------------------ HTTP

    async def _http(self, operation: str, *, message: bytes | None = None,
                    post: bool = False) -> httpx.Response:
        params: dict[str, str] = {"operation": operation}
        if message is not None and not post:
            params["message"] = base64.b64encode(message).decode("ascii")
        url = self._url.copy_merge_params(params)
        started = time.perf_counter()
        try:
            if post:
                response = await self._client.post(
                    url, content=message,
                    headers={"Content-Type": "application/x-pki-message"},
                )
            else:
                response = await self._client.get(url)
        except httpx.TimeoutException as exc:
            raise ScepError(
                f"SCEP server {self.url} unreachable: {operation} timed out after "
                f"{self.timeout:g} s ({type(exc).__name__})"
            ) from None
        except httpx.TransportError as exc:
            detail = redact(str(exc)) or type(exc).__name__
            raise ScepError(
                f"SCEP server {self.url} unreachable: {operation}: {type(exc).__name__}: {detail}"
            ) from None
        elapsed = (time.perf_counter() - started) * 1000
        _log.debug("SCEP %s %s %s: HTTP %s, %d bytes, %.1f ms", "POST" if post else "GET",
                   self.url, operation, response.status_code, len(response.content), elapsed)
        if response.is_redirect:
            raise ScepError(
                f"SCEP server {self.url} redirects {operation} to "
                f"{response.headers.get('location', '?')}; redirects are not followed: "
                "configure the final URL"
            )
        if response.status_code != 200:
            text = " ".join(response.text.split())[:300]
            raise ScepError(
                f"SCEP server {self.url} answered {operation} with HTTP "
                f"{response.status_code} {response.reason_phrase}"
                + (f": {redact(text)}" if text else "")
            )
        return response

    # --------------------------------------------------------------------- CA and caps

    async def get_ca_caps(self) -> frozenset[str]:
        """The server's GetCACaps keywords (``POSTPKIOperation``, ``SHA-256``, ``AES`` ...)."""
        response = await self._http("GetCACaps")
        return frozenset(line.strip() for line in response.text.splitlines() if line.strip())

    async def get_ca(self) -> CaInfo:
        """GetCACert (checked against the fingerprint, when there is one), then GetCACaps.

        The fingerprint may match any certificate the server sent (the CA, an RA, or a root
        above the CA); the recipient is an RA certificate with keyEncipherment that the CA
        issued, if there is one, else the CA. On a mismatch nothing but GetCACert was sent.
        """
        response = await self._http("GetCACert")
        certs = _load_ca_certs(response.content, response.headers.get("content-type", ""),
                               url=self.url)
        ca, recipient = _pick_ca_and_recipient(certs)
        if self._fingerprint is not None:
            _check_pin(self._fingerprint, certs, ca, recipient, url=self.url)
        caps = await self.get_ca_caps()
        info = CaInfo(certs=certs, caps=caps, recipient=recipient, ca=ca)
        self._ca = info
        return info

    # ---------------------------------------------------------------------------- enroll

    async def enroll(
        self,
        csr: x509.CertificateSigningRequest,
        key: rsa.RSAPrivateKey,
        *,
        challenge: Secret | None = None,
    ) -> EnrollResult:
        """Enroll ``csr`` (signed by ``key``) with a PKCSReq; the issued certificate.

        ``challenge``, when given, must already be the CSR's challengePassword attribute
        (:func:`build_scep_csr`, :func:`csr_with_challenge` put it there): ValueError if it is
        not. ScepError for everything the server or the network does wrong.
        """
        started = time.perf_counter()
        if self._fingerprint is None:
            raise ScepError(
                f"SCEP enrollment at {self.url} needs the CA fingerprint (ca_fingerprint): "
                "without it anyone on the path could pose as the CA; get_ca() shows it"
            )
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("SCEP needs an RSA key: SCEP servers sign RSA requests only")
        in_csr = _csr_challenge(csr)
        if in_csr is not None:
            register_secret(in_csr.decode("utf-8", "replace"))
        if challenge is not None:
            if in_csr is None:
                raise ValueError(
                    "a challenge was given but the CSR has no challengePassword attribute: "
                    "build the CSR with build_scep_csr(..., challenge=) or csr_with_challenge()"
                )
            if not hmac.compare_digest(in_csr, challenge.reveal().encode("utf-8")):
                raise ValueError("the CSR's challengePassword is not the challenge given")
        _check_key_matches(csr, key)
        if not csr.is_signature_valid:
            raise ValueError("the CSR's signature does not verify")

        async with self._ca_lock:
            ca = self._ca if self._ca is not None else await self.get_ca()
        try:
            request = await asyncio.to_thread(_build_pki_message, csr, key, ca)
        except ScepError as exc:
            exc.message = f"SCEP server {self.url}: {exc.message}"
            raise
        post = ca.has_cap("POSTPKIOperation") or ca.has_cap("SCEPStandard")
        async with _serialised(self._origin):
            response = await self._http("PKIOperation", message=request.message, post=post)
        try:
            cert, chain = await asyncio.to_thread(_read_cert_rep, response.content, request, ca,
                                                    key)
        except ScepError as exc:
            exc.message = f"SCEP server {self.url}: {exc.message}"
            raise
        duration = (time.perf_counter() - started) * 1000
        _log.debug("SCEP %s: enrolled %s (serial %x, transaction %s) in %.1f ms", self.url,
                   cert.subject.rfc4514_string(), cert.serial_number, request.transaction_id,
                   duration)
        return EnrollResult(cert=cert, chain=chain, transaction_id=request.transaction_id,
                            duration_ms=duration)


# ------------------------------------------------------------------------ GetCACert parsing


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


# -------------------------------------------------------------------------- the request


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


def _issuer_and_serial(cert: x509.Certificate) -> object:
    parsed = asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
    return cms.IssuerAndSerialNumber({"issuer": parsed.issuer,
                                      "serial_number": parsed.serial_number})


def _choose(ca: CaInfo) -> tuple[str, str]:
    """(digest, content cipher) for the request, from the caps."""
    standard = ca.has_cap("SCEPStandard")
    digest = "sha256" if standard or ca.has_cap("SHA-256") else "sha1"
    cipher = "aes128_cbc" if standard or ca.has_cap("AES") else "tripledes_3key"
    return digest, cipher


def _envelope(data: bytes, recipient: x509.Certificate, cipher: str) -> bytes:
    """ContentInfo(EnvelopedData) of ``data`` for ``recipient`` (RSA PKCS#1 v1.5 key transport)."""
    public = recipient.public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        raise ScepError("the SCEP CA/RA certificate has no RSA key: requests cannot be "
                        "encrypted to it")
    if cipher == "aes128_cbc":
        # AES-128-CBC is the builder's default (and its only choice before cryptography 45)
        return pkcs7.PKCS7EnvelopeBuilder().set_data(data).add_recipient(recipient).encrypt(
            serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary]
        )
    cek, iv = os.urandom(24), os.urandom(8)
    padder = sym_padding.PKCS7(64).padder()
    encryptor = Cipher(TripleDES(cek), modes.CBC(iv)).encryptor()
    encrypted = encryptor.update(padder.update(data) + padder.finalize()) + encryptor.finalize()
    enveloped = cms.EnvelopedData({
        "version": "v0",
        "recipient_infos": [cms.RecipientInfo({"ktri": cms.KeyTransRecipientInfo({
            "version": "v0",
            "rid": cms.RecipientIdentifier({
                "issuer_and_serial_number": _issuer_and_serial(recipient)}),
            "key_encryption_algorithm": {"algorithm": "rsaes_pkcs1v15"},
            "encrypted_key": public.encrypt(cek, padding.PKCS1v15()),
        })})],
        "encrypted_content_info": {
            "content_type": "data",
            "content_encryption_algorithm": {"algorithm": "tripledes_3key",
                                             "parameters": core.OctetString(iv)},
            "encrypted_content": encrypted,
        },
    })
    dumped: bytes = cms.ContentInfo({"content_type": "enveloped_data",
                                     "content": enveloped}).dump()
    return dumped


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


# -------------------------------------------------------------------------- the reply


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


def _read_cert_rep(
    data: bytes, request: _Request, ca: CaInfo, key: rsa.RSAPrivateKey
) -> tuple[x509.Certificate, tuple[x509.Certificate, ...]]:
    """Check a CertRep (signature, digest, type, transaction, nonce) and take its certificate:
    the one for ``key`` from the *decrypted* content, never the outer clear-text copies."""
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
    content_bytes = content or b""

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


# ------------------------------------------------------------------------- BER walking


class Tlv(NamedTuple):
    """One BER TLV: its first identifier octet, and where its parts are in the buffer."""

    tag: int
    constructed: bool
    start: int
    content_start: int
    content_end: int
    end: int


def read_tlv(data: bytes, pos: int = 0, limit: int | None = None, *, _depth: int = 0) -> Tlv:
    """The BER TLV at ``data[pos:]`` (definite or indefinite length). ValueError if malformed."""
    end_limit = len(data) if limit is None else limit
    if _depth > _MAX_TLV_DEPTH:
        raise ValueError("BER nesting too deep")
    if pos >= end_limit:
        raise ValueError("BER data truncated (no tag)")
    tag = data[pos]
    constructed = bool(tag & 0x20)
    cursor = pos + 1
    if tag & 0x1F == 0x1F:  # high tag number: skip its base-128 octets
        while True:
            if cursor >= end_limit:
                raise ValueError("BER data truncated (in a tag)")
            octet = data[cursor]
            cursor += 1
            if not octet & 0x80:
                break
    if cursor >= end_limit:
        raise ValueError("BER data truncated (no length)")
    first = data[cursor]
    cursor += 1
    if first == 0x80:  # indefinite length: children until the end-of-contents octets
        if not constructed:
            raise ValueError("BER indefinite length on a primitive value")
        child = cursor
        while True:
            if child + 2 > end_limit:
                raise ValueError("BER data truncated (no end-of-contents)")
            if data[child] == 0 and data[child + 1] == 0:
                return Tlv(tag, constructed, pos, cursor, child, child + 2)
            child = read_tlv(data, child, end_limit, _depth=_depth + 1).end
    if first & 0x80:
        count = first & 0x7F
        if count > 4:
            raise ValueError("BER length too long")
        if cursor + count > end_limit:
            raise ValueError("BER data truncated (in a length)")
        length = int.from_bytes(data[cursor:cursor + count], "big")
        cursor += count
    else:
        length = first
    if cursor + length > end_limit:
        raise ValueError("BER data truncated (content shorter than its length)")
    return Tlv(tag, constructed, pos, cursor, cursor + length, cursor + length)


def tlv_children(data: bytes, parent: Tlv) -> list[Tlv]:
    """The TLVs inside a constructed ``parent``."""
    if not parent.constructed:
        raise ValueError("a primitive BER value has no children")
    children: list[Tlv] = []
    pos = parent.content_start
    while pos < parent.content_end:
        child = read_tlv(data, pos, parent.content_end)
        children.append(child)
        pos = child.end
    return children


def octet_string_value(data: bytes, tlv: Tlv, *, _depth: int = 0) -> bytes:
    """The bytes of an OCTET STRING (any tag): primitive, or BER constructed from segments."""
    if not tlv.constructed:
        return data[tlv.content_start:tlv.content_end]
    if _depth > _MAX_TLV_DEPTH:
        raise ValueError("BER nesting too deep")
    parts = []
    for child in tlv_children(data, tlv):
        if child.tag & 0xDF != 0x04:  # OCTET STRING segments, primitive or constructed
            raise ValueError(f"a constructed OCTET STRING holds tag 0x{child.tag:02x}")
        parts.append(octet_string_value(data, child, _depth=_depth + 1))
    return b"".join(parts)


class EnvelopedParts(NamedTuple):
    """What is needed from a ContentInfo(EnvelopedData) to decrypt it."""

    recipient_infos: bytes  # the DER/BER of the RecipientInfos SET
    algorithm: bytes  # the DER/BER of the content-encryption AlgorithmIdentifier
    encrypted: bytes  # the encrypted content, segments joined


def split_enveloped_data(data: bytes) -> EnvelopedParts:
    """Walk a ContentInfo(EnvelopedData) TLV by TLV (RFC 5652 §6.1). ValueError if malformed."""
    top = read_tlv(data)
    if top.tag != 0x30:
        raise ValueError("not a ContentInfo (no SEQUENCE)")
    fields = tlv_children(data, top)
    if len(fields) < 2 or fields[0].tag != 0x06 or fields[1].tag != 0xA0:
        raise ValueError("not a ContentInfo (contentType, [0] content)")
    if data[fields[0].content_start:fields[0].content_end] != _ENVELOPED_DATA_OID:
        raise ValueError("the ContentInfo is not envelopedData")
    inner = tlv_children(data, fields[1])
    if len(inner) != 1 or inner[0].tag != 0x30:
        raise ValueError("the envelopedData content is not a SEQUENCE")
    parts = tlv_children(data, inner[0])
    # version, [0] originatorInfo OPTIONAL, recipientInfos SET, encryptedContentInfo, [1] ...
    index = 1
    if index < len(parts) and parts[index].tag == 0xA0:
        index += 1
    if index + 1 >= len(parts) or parts[index].tag != 0x31 or parts[index + 1].tag != 0x30:
        raise ValueError("envelopedData without recipientInfos and encryptedContentInfo")
    recipients, content_info = parts[index], parts[index + 1]
    eci = tlv_children(data, content_info)
    if len(eci) < 3 or eci[1].tag != 0x30 or eci[2].tag not in (0x80, 0xA0):
        raise ValueError("encryptedContentInfo without algorithm and [0] encryptedContent")
    return EnvelopedParts(
        recipient_infos=data[recipients.start:recipients.end],
        algorithm=data[eci[1].start:eci[1].end],
        encrypted=octet_string_value(data, eci[2]),
    )


# ------------------------------------------------------------------------------ decrypt


def decrypt_content(algorithm: str, key: bytes, iv: bytes, encrypted: bytes) -> bytes:
    """CBC-decrypt and unpad (PKCS#7) with ``des`` (single DES, as 3DES with the key three
    times), ``tripledes_3key``, or ``aes128_cbc``/``aes192_cbc``/``aes256_cbc`` (asn1crypto's
    names). ValueError if the key, IV or padding is wrong."""
    cipher: algorithms.AES | TripleDES
    if algorithm == "des":
        if len(key) != 8:
            raise ValueError(f"a DES key has 8 bytes, not {len(key)}")
        cipher = TripleDES(key * 3)  # EDE with K1=K2=K3 is single DES
    elif algorithm == "tripledes_3key":
        if len(key) != 24:
            raise ValueError(f"a 3DES key has 24 bytes, not {len(key)}")
        cipher = TripleDES(key)
    elif algorithm in ("aes128_cbc", "aes192_cbc", "aes256_cbc"):
        if len(key) != int(algorithm[3:6]) // 8:
            raise ValueError(f"{algorithm} needs a {int(algorithm[3:6]) // 8}-byte key")
        cipher = algorithms.AES(key)
    else:
        raise ValueError(f"content encryption {algorithm} is not supported")
    block = cipher.block_size // 8
    if len(iv) != block:
        raise ValueError(f"the IV has {len(iv)} bytes, not {block}")
    if not encrypted or len(encrypted) % block:
        raise ValueError("the encrypted content is not a whole number of blocks")
    decryptor = Cipher(cipher, modes.CBC(iv)).decryptor()
    padded = decryptor.update(encrypted) + decryptor.finalize()
    unpadder = sym_padding.PKCS7(cipher.block_size).unpadder()
    return unpadder.update(padded) + unpadder.finalize()


def decrypt_enveloped(data: bytes, key: rsa.RSAPrivateKey,
                      recipient: x509.Certificate | None = None) -> bytes:
    """The plaintext of a ContentInfo(EnvelopedData) addressed to ``key`` (RSA PKCS#1 v1.5 key
    transport), BER or DER. With ``recipient``, the RecipientInfo must name that certificate.
    ValueError if it cannot be decrypted."""
    parts = split_enveloped_data(data)
    wanted = _issuer_and_serial(recipient) if recipient is not None else None
    encrypted_key: bytes | None = None
    for info in cms.RecipientInfos.load(parts.recipient_infos):
        if info.name != "ktri":
            continue
        ktri = info.chosen
        rid = ktri["rid"]
        if wanted is not None and (
            rid.name != "issuer_and_serial_number"
            or rid.chosen["issuer"] != wanted["issuer"]  # type: ignore[index]
            or rid.chosen["serial_number"].native != wanted["serial_number"].native  # type: ignore[index]
        ):
            continue
        transport = ktri["key_encryption_algorithm"]["algorithm"].native
        if transport != "rsaes_pkcs1v15":
            raise ValueError(f"key transport {transport} is not supported")
        encrypted_key = ktri["encrypted_key"].native
        break
    if encrypted_key is None:
        raise ValueError("the envelope is not addressed to our certificate")
    algorithm = cms.EncryptionAlgorithm.load(parts.algorithm)
    name = algorithm["algorithm"].native
    iv = algorithm["parameters"].native
    if not isinstance(iv, bytes):
        raise ValueError(f"content encryption {name} without an IV")
    content_key = key.decrypt(encrypted_key, padding.PKCS1v15())
    try:
        return decrypt_content(name, content_key, iv, parts.encrypted)
    except ValueError as exc:
        raise ValueError(f"decrypting with {name} failed ({exc}): wrong key, or corrupt") from None


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
