"""fleet.pki.scep.client — :class:`ScepClient`: GetCACaps, GetCACert and enrollment (PKCSReq)
against one SCEP server URL."""

from __future__ import annotations

import asyncio
import base64
import functools
import hmac
import logging
import ssl
import time
from dataclasses import dataclass
from types import TracebackType

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from ...errors import ScepError
from ...fingerprints import CA_DIGEST_LENGTHS, normalize_fingerprint
from ...secrets import Secret, redact, register_secret
from .ca import (
    CaInfo,
    _check_pin,
    _load_ca_certs,
    _pick_ca_and_recipient,
)
from .csr import _check_key_matches, _csr_challenge
from .lock import _origin, _serialised
from .message import _build_pki_message
from .reply import _read_cert_rep

_log = logging.getLogger("certfleet.fleet.pki.scep")  # the name it had as one module


@dataclass(frozen=True)
class EnrollResult:
    #: the issued certificate (taken from the decrypted reply)
    cert: x509.Certificate
    #: the other certificates of the reply, then the CA (leaf not included)
    chain: tuple[x509.Certificate, ...]
    transaction_id: str
    #: the whole enroll() call, including GetCACaps/GetCACert and the wait for the lock
    duration_ms: float


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
            self._fingerprint = (normalize_fingerprint(ca_fingerprint, lengths=CA_DIGEST_LENGTHS)
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
