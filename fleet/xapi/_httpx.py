"""fleet.xapi._httpx — httpx clients set up the way certfleet talks to HTTPS servers, for the
Webex cloud API, and what an httpx error means (:func:`failure_from_httpx`, the one place
httpx errors are mapped: to the same :class:`~fleet.xapi._http.HttpFailure` kinds the local
client raises).

Kept apart from the device path so a run that reaches devices only locally does not import
httpx (its import alone cost a tenth of a second of every run)."""

from __future__ import annotations

import hashlib
import http.cookiejar
import ssl
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from ..errors import InputError
from ..inventory import Verify
from ._config import USER_AGENT, Timeouts, ssl_context_for
from ._http import (
    ConnectFailed,
    ConnectionBroke,
    ConnectTimedOut,
    HttpFailure,
    ReplyTimedOut,
    TlsRejected,
)

__all__ = ["PinMismatch", "build_client", "failure_from_httpx", "redact_url"]

_TLS_MARKERS = ("CERTIFICATE_VERIFY_FAILED", "certificate verify failed", "Hostname mismatch")


class PinMismatch(httpcore.ConnectError):
    """Raised inside an httpcore TLS handshake when the certificate is not the pinned one."""


class _PinnedStream(httpcore.AsyncNetworkStream):
    def __init__(self, inner: httpcore.AsyncNetworkStream, pin: str) -> None:
        self._inner = inner
        self._pin = pin

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.start_tls(ssl_context, server_hostname, timeout)
        ssl_object = stream.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
        seen = hashlib.sha256(der).hexdigest() if der else "no certificate"
        if seen != self._pin:
            await stream.aclose()
            raise PinMismatch(f"certificate SHA-256 {seen} does not match the pinned {self._pin}")
        return _PinnedStream(stream, self._pin)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _PinningBackend(httpcore.AsyncNetworkBackend):
    """Checks the pinned certificate inside the TLS handshake, before a byte of HTTP is sent."""

    def __init__(self, pin: str) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._pin = pin

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _PinnedStream(stream, self._pin)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False


def build_client(
    verify: Verify,
    *,
    max_connections: int,
    timeouts: Timeouts,
    proxy: str | None = None,
) -> httpx.AsyncClient:
    """One HTTP client for one TLS trust setting: verified TLS (CA file, pin checked inside
    the handshake, or the system store), no cookie jar, no redirects, and nothing taken from
    the environment — no proxies, no CA bundles. ``proxy`` (an ``http://`` URL) sends the
    requests through that proxy (CONNECT tunnel; TLS is still end to end and verified)."""
    ctx = ssl_context_for(verify)
    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=30.0,
    )
    transport = httpx.AsyncHTTPTransport(
        verify=ctx, limits=limits, trust_env=False,
        proxy=httpx.Proxy(proxy) if proxy else None,
    )
    if verify.mode == "pin":
        assert verify.pin_sha256
        if proxy:
            raise InputError(
                f"verify {verify}: a pinned certificate cannot be checked through the proxy "
                f"{redact_url(proxy)}; use ca:PATH, or exempt the host with NO_PROXY"
            )
        transport._pool = httpcore.AsyncConnectionPool(
            ssl_context=ctx,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_PinningBackend(verify.pin_sha256),
        )
    return httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(connect=timeouts.connect, read=timeouts.read,
                              write=timeouts.write, pool=timeouts.pool),
        cookies=http.cookiejar.CookieJar(policy=_NoCookies()),
        headers={"User-Agent": USER_AGENT},
        trust_env=False,
        follow_redirects=False,
    )


def redact_url(url: str) -> str:
    """A URL fit to print: any ``user:password@`` in it replaced by ``***@``."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return parts._replace(netloc=f"***@{host}").geturl()


def failure_from_httpx(exc: httpx.HTTPError) -> HttpFailure:
    """What an httpx error means for the retry rules."""
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__
    if isinstance(cause, PinMismatch):  # raised inside the handshake by a pinning backend
        return TlsRejected(str(cause), pinned=True)
    if isinstance(exc, httpx.ConnectError):
        if isinstance(cause, ssl.SSLCertVerificationError) or any(
            marker in text for marker in _TLS_MARKERS
        ):
            return TlsRejected(text)
        return ConnectFailed(text)
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        return ConnectTimedOut("connection timed out")
    if isinstance(exc, httpx.TimeoutException):
        return ReplyTimedOut(f"{type(exc).__name__}: {text}")
    return ConnectionBroke(text)
