"""fleet.xapi.local — the device's local HTTPS xAPI: putxml / getxml with a session cookie.

Facts that shape this module (reference: roomos-local-xapi.md §2):

* Basic auth on every request is processed at 1 request/s per device; a session cookie from
  ``POST /xmlapi/session/begin`` at 15/s. So a session is opened once per device and always
  closed with ``/xmlapi/session/end`` (sessions do not time out and are capped). Devices that
  answer the begin with a redirect or 404 have no sessions: basic auth is the fallback.
* A 401 is never retried: the account locks after 5 failed logins.
* 503 means the device's queue is full and the request was not processed: always safe to retry,
  with exponential backoff and full jitter. Connection failures before the request was sent are
  retried likewise; failures after it was sent only for idempotent calls.
* putxml answers HTTP 200 for errors too; the XML says what went wrong (see ``_xml``).

Device traffic never uses proxies from the environment, never shares cookies between devices
(the jar is disabled; the session cookie is kept per transport), and TLS is verified as the
inventory says: a CA file, a pinned SHA-256 of the device certificate (checked during the
handshake, before any credential is sent), the system store, or — spelled out — not at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import http.cookiejar
import random
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from fleet.errors import (
    AuthError,
    BadReplyError,
    DeviceError,
    InputError,
    RateLimitedError,
    TimeoutError_,
    TlsVerifyError,
    TransportError,
    UnreachableError,
)
from fleet.inventory import Device, Verify
from fleet.secrets import Secret
from fleet.xapi import _xml
from fleet.xapi.transport import (
    Exchange,
    ParamValue,
    Recorder,
    describe_body,
    describe_params,
    xpath,
)

__all__ = [
    "LocalClients",
    "LocalTransport",
    "PinMismatch",
    "RetryPolicy",
    "Timeouts",
    "build_client",
    "fetch_peer_certificate",
    "ssl_context_for",
]

_USER_AGENT = "certfleet/0.1"
SESSION_END_TIMEOUT = 5.0


@dataclass(frozen=True)
class Timeouts:
    """Per-request timeouts in seconds (the per-device budget is the runner's)."""

    connect: float = 10.0
    read: float = 60.0  # RoomOS queues requests: a full queue of 30 at 1/s is 30 s
    write: float = 10.0
    pool: float = 60.0

    def to_httpx(self) -> httpx.Timeout:
        return httpx.Timeout(connect=self.connect, read=self.read, write=self.write, pool=self.pool)


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff with full jitter: sleep uniform(0, min(cap, base * 2**attempt))."""

    attempts: int = 4
    base: float = 0.5
    cap: float = 8.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.cap, self.base * (2**attempt)))


# ------------------------------------------------------------------------------- TLS


class PinMismatch(httpcore.ConnectError):
    pass


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


@functools.cache
def ssl_context_for(verify: Verify) -> ssl.SSLContext:
    """The TLS context for a device's ``verify:`` setting (pins are checked separately)."""
    if verify.mode == "ca":
        ctx = ssl.create_default_context(cafile=str(verify.ca_path))
    elif verify.mode == "system":
        ctx = ssl.create_default_context()
    else:  # pin (checked in the handshake by _PinningBackend) or insecure (spelled out)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


async def fetch_peer_certificate(device: Device, *, timeout: float = 10.0) -> bytes:
    """A new TLS handshake with the device, verified as its inventory entry says; returns the
    DER of the certificate it presents. Used to prove a newly activated HTTPS certificate is
    really served (a keep-alive connection would still show the old one)."""
    if not device.host:
        raise UnreachableError(f"{device.name} has no host", device=device.name)
    ctx = ssl_context_for(device.verify)
    where = f"{device.host}:{device.port}"
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                device.host, device.port, ssl=ctx, server_hostname=device.host
            )
    except ssl.SSLCertVerificationError as exc:
        raise TlsVerifyError(
            f"TLS certificate of {where} did not verify against {device.verify}: "
            f"{exc.verify_message}",
            device=device.name,
        ) from exc
    except (OSError, TimeoutError) as exc:
        raise UnreachableError(f"TLS handshake with {where} failed: {exc}",
                               device=device.name) from exc
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        der: bytes | None = ssl_object.getpeercert(binary_form=True) if ssl_object else None
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
    del reader
    if not der:
        raise BadReplyError(f"{where} presented no certificate", device=device.name)
    if device.verify.mode == "pin" and hashlib.sha256(der).hexdigest() != device.verify.pin_sha256:
        raise TlsVerifyError(f"TLS pin check failed for {where}", device=device.name)
    return der


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
        timeout=timeouts.to_httpx(),
        cookies=http.cookiejar.CookieJar(policy=_NoCookies()),
        headers={"User-Agent": _USER_AGENT},
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


class LocalClients:
    """Shared HTTP clients, one per TLS trust setting, so connections and TLS contexts are
    reused across the fleet instead of being built per device or per request."""

    def __init__(self, *, max_connections: int = 100, timeouts: Timeouts | None = None) -> None:
        self._clients: dict[str, httpx.AsyncClient] = {}
        self._max = max_connections
        self.timeouts = timeouts or Timeouts()

    def client_for(self, verify: Verify) -> httpx.AsyncClient:
        key = str(verify)
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = build_client(
                verify, max_connections=self._max, timeouts=self.timeouts
            )
        return client

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()


# ------------------------------------------------------------------------- transport


class LocalTransport:
    """xAPI over one device's HTTPS putxml/getxml."""

    name = "local"

    def __init__(
        self,
        device: Device,
        client: httpx.AsyncClient,
        password: Secret,
        *,
        retry: RetryPolicy | None = None,
        recorder: Recorder | None = None,
    ) -> None:
        if not device.host:
            raise ValueError(f"device {device.name} has no host")
        self.device = device
        self._client = client
        self._password = password
        self._retry = retry or RetryPolicy()
        self._recorder = recorder
        host = device.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # IPv6 literal
        self.base_url = f"https://{host}:{device.port}"
        self._session: str | None = None
        self._basic_only = False
        self._relogged = False

    # -- session ---------------------------------------------------------------------

    def _auth(self) -> tuple[str, str]:
        return (self.device.username or "", self._password.reveal())

    async def __aenter__(self) -> LocalTransport:
        await self.begin_session()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.end_session()

    async def begin_session(self) -> None:
        exchange = Exchange(kind="session", path="xmlapi/session/begin")
        started = time.perf_counter()
        try:
            response = await self._send(
                "POST", "/xmlapi/session/begin", exchange, auth=True, idempotent=True,
                content=b"",
            )
            if response.status_code in (401, 403, 503):
                self._check_status(response)
            if response.status_code in (200, 204):
                cookie = response.cookies.get("SessionId")
                if not cookie:
                    raise BadReplyError(
                        f"session begin answered {response.status_code} without a SessionId cookie"
                    )
                self._session = cookie
            elif response.status_code in (301, 302, 303, 307, 308, 404):
                # No XML API sessions on this device (TC-era firmware): basic auth per request.
                self._basic_only = True
            else:
                raise BadReplyError(f"session begin answered HTTP {response.status_code}")
            exchange.ok = True
        except DeviceError as exc:
            exchange.error = str(exc.message)
            raise exc.with_context(device=self.device.name, xpath="xmlapi/session/begin") from None
        finally:
            exchange.duration_ms = (time.perf_counter() - started) * 1000
            self._record(exchange)

    async def end_session(self) -> None:
        if self._session is None:
            return
        exchange = Exchange(kind="session", path="xmlapi/session/end")
        started = time.perf_counter()
        try:
            # Bounded: a device that stopped answering must not hold the run (or a timed-out
            # device's clean-up) for the full read timeout.
            async with asyncio.timeout(SESSION_END_TIMEOUT):
                response = await self._client.post(
                    self.base_url + "/xmlapi/session/end",
                    headers={"Cookie": f"SessionId={self._session}"},
                    content=b"",
                )
            exchange.http_status = response.status_code
            exchange.ok = response.status_code < 400
        except (httpx.HTTPError, TimeoutError) as exc:
            # The device is gone or busy; its session cap frees the slot when it restarts.
            exchange.error = f"{type(exc).__name__}: {exc}"
        finally:
            self._session = None
            exchange.duration_ms = (time.perf_counter() - started) * 1000
            self._record(exchange)

    # -- calls -----------------------------------------------------------------------

    async def command(
        self,
        path: Sequence[str],
        params: Mapping[str, ParamValue] | None = None,
        body: str | None = None,
        *,
        idempotent: bool = False,
    ) -> dict[str, Any]:
        exchange = Exchange(
            kind="command",
            path=xpath(path),
            params=describe_params(params),
            body=describe_body(body) if body is not None else None,
        )
        document = _xml.build_command(path, params, body)

        def parse(response: httpx.Response) -> dict[str, Any]:
            return _xml.parse_command_reply(response.content, path)

        result: dict[str, Any] = await self._call(
            exchange, "POST", "/putxml", document, idempotent, parse
        )
        return result

    async def get(self, path: Sequence[str | int]) -> Any:
        location = _xml.getxml_location(path)
        exchange = Exchange(kind="get", path=location.lstrip("/"))

        def parse(response: httpx.Response) -> Any:
            return _xml.parse_get_reply(response.content, path)

        return await self._call(
            exchange, "GET", "/getxml", None, True, parse, query={"location": location}
        )

    async def configure(self, path: Sequence[str | int], value: str) -> None:
        exchange = Exchange(
            kind="configure", path="/".join(str(p) for p in path), params={"value": value}
        )
        document = _xml.build_configuration(path, value)

        def parse(response: httpx.Response) -> None:
            _xml.parse_configuration_reply(response.content, path)

        await self._call(exchange, "POST", "/putxml", document, True, parse)

    async def _call(
        self,
        exchange: Exchange,
        method: str,
        url: str,
        content: bytes | None,
        idempotent: bool,
        parse: Any,
        query: Mapping[str, str] | None = None,
    ) -> Any:
        started = time.perf_counter()
        try:
            response = await self._send(
                method, url, exchange, content=content, idempotent=idempotent, query=query
            )
            if response.status_code == 401 and self._session is not None and not self._relogged:
                # The session is gone (device rebooted, session terminated): log in once more.
                # A wrong password fails this single login and is not tried again.
                self._relogged = True
                self._session = None
                await self.begin_session()
                response = await self._send(
                    method, url, exchange, content=content, idempotent=idempotent, query=query
                )
            self._check_status(response)
            result = parse(response)
            exchange.ok = True
            return result
        except DeviceError as exc:
            exchange.error = exc.message
            raise exc.with_context(device=self.device.name, xpath=exchange.path) from None
        finally:
            exchange.duration_ms = (time.perf_counter() - started) * 1000
            self._record(exchange)

    def _check_status(self, response: httpx.Response) -> None:
        status = response.status_code
        if status == 200:
            return
        if status == 401:
            raise AuthError(
                f"login as {self.device.username!r} refused (HTTP 401): wrong username or "
                "password, or the account is locked after failed logins; not retried, "
                "to avoid locking the account"
            )
        if status == 503:
            raise RateLimitedError("device is busy (HTTP 503) after retries")
        if status == 403:
            raise AuthError(f"user {self.device.username!r} lacks the role for this (HTTP 403)")
        raise BadReplyError(f"unexpected HTTP {status}")

    async def _send(
        self,
        method: str,
        url: str,
        exchange: Exchange,
        *,
        content: bytes | None = None,
        idempotent: bool,
        auth: bool = False,
        query: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        headers: dict[str, str] = {}
        if content:
            headers["Content-Type"] = "text/xml; charset=utf-8"
        use_basic = auth or self._basic_only or self._session is None
        if not use_basic:
            headers["Cookie"] = f"SessionId={self._session}"
        attempt = 0
        while True:
            exchange.attempts = attempt + 1
            try:
                response = await self._client.request(
                    method,
                    self.base_url + url,
                    content=content,
                    headers=headers,
                    params=query,
                    auth=self._auth() if use_basic else None,
                )
                exchange.http_status = response.status_code
            except httpx.HTTPError as exc:
                error = self._map_exception(exc)
                sent = not isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout,
                                            httpx.PoolTimeout))
                retryable = not isinstance(error, TlsVerifyError) and (idempotent or not sent)
                if retryable and attempt + 1 < self._retry.attempts:
                    await asyncio.sleep(self._retry.delay(attempt))
                    attempt += 1
                    continue
                raise error from exc
            if response.status_code == 503 and attempt + 1 < self._retry.attempts:
                # Queue full: the request was not processed. Honour Retry-After if given.
                delay = self._retry.delay(attempt)
                retry_after = response.headers.get("Retry-After", "")
                if retry_after.isdigit():
                    delay = max(delay, min(float(retry_after), self._retry.cap * 4))
                await asyncio.sleep(delay)
                attempt += 1
                continue
            return response

    def _map_exception(self, exc: httpx.HTTPError) -> DeviceError:
        where = f"{self.device.host}:{self.device.port}"
        cause = exc.__cause__
        if isinstance(cause, PinMismatch):
            return TlsVerifyError(f"TLS pin check failed for {where}: {cause}")
        if isinstance(exc, httpx.ConnectError):
            text = str(exc)
            verify_failed = isinstance(cause, ssl.SSLCertVerificationError) or any(
                marker in text
                for marker in ("CERTIFICATE_VERIFY_FAILED", "certificate verify failed",
                               "Hostname mismatch")
            )
            if verify_failed:
                return TlsVerifyError(
                    f"TLS certificate of {where} did not verify against {self.device.verify}: "
                    f"{text}; fix the trust setting (verify:) rather than turning checks off"
                )
            return UnreachableError(f"cannot connect to {where}: {text or type(exc).__name__}")
        if isinstance(exc, httpx.ConnectTimeout):
            return UnreachableError(f"connection to {where} timed out")
        if isinstance(exc, httpx.TimeoutException):
            return TimeoutError_(f"{type(exc).__name__} talking to {where}")
        if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
            return TransportError(
                f"connection to {where} broke: {exc or type(exc).__name__}"
            )
        return TransportError(f"{type(exc).__name__} talking to {where}: {exc}")

    def _record(self, exchange: Exchange) -> None:
        if self._recorder is not None:
            self._recorder(exchange)
