"""fleet.xapi.local — the device's local HTTPS xAPI: putxml / getxml with a session cookie.

Facts that shape this module (reference: roomos-local-xapi.md §2):

* Basic auth on every request is processed at 1 request/s per device; a session cookie from
  ``POST /xmlapi/session/begin`` at 15/s. So a session is opened once per device and always
  closed with ``/xmlapi/session/end`` (sessions do not time out and are capped). Devices that
  answer the begin with a redirect or 404 have no sessions: basic auth is the fallback.
* A 401 is never retried: the account locks after 5 failed logins.
* 503 means the device's queue is full and the request was not processed: always safe to retry,
  with exponential backoff and full jitter. Connection failures before the request was sent are
  retried likewise; failures after it was sent only for idempotent calls, and never for a
  request carrying credentials the device has not yet accepted (``fleet.xapi._login``).
* putxml answers HTTP 200 for errors too; the XML says what went wrong (see ``_xml``).

Device traffic never uses proxies from the environment, never shares cookies between devices
(the jar is disabled; the session cookie is kept per transport), and TLS is verified as the
inventory says: a CA file, a pinned SHA-256 of the device certificate (checked during the
handshake, before any credential is sent), the system store, or — spelled out — not at all.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import ssl
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import (
    AuthError,
    BadReplyError,
    DeviceError,
    InputError,
    RateLimitedError,
    UnreachableError,
)
from ..inventory import Device, Verify
from ..secrets import Secret, redact, register_secret
from . import _xml
from ._config import Backoff, RetryPolicy, Timeouts, bracket_host, ssl_context_for
from ._http import (
    HttpClient,
    HttpFailure,
    HttpReply,
    StreamClient,
    TlsRejected,
    failure_error,
    open_tls,
)
from ._login import LoginGuard, after_failure, device_label
from .transport import Exchange, ParamValue, Recorder, recorded

__all__ = [
    "LocalClients",
    "LocalTransport",
    "fetch_peer_certificate",
]

SESSION_END_TIMEOUT = 5.0
#: a cookie value as RFC 6265 allows it (cookie-octet): no controls, space, '"', ',', ';', '\\'
_COOKIE_VALUE = re.compile(r"[\x21\x23-\x2B\x2D-\x3A\x3C-\x5B\x5D-\x7E]{1,4096}")


# ------------------------------------------------------------------------------- TLS


async def fetch_peer_certificate(device: Device, *, timeout: float = 10.0) -> bytes:
    """A new TLS handshake with the device, verified as its inventory entry says; returns the
    DER of the certificate it presents. Used to prove a newly activated HTTPS certificate is
    really served (a keep-alive connection would still show the old one)."""
    if not device.host:
        raise UnreachableError(f"{device.name} has no host", device=device.name)
    where = device.address
    try:
        _, writer, der = await open_tls(
            device.host, device.port, ssl_context_for(device.verify), timeout=timeout,
            pin_sha256=device.verify.pin_sha256 if device.verify.mode == "pin" else None,
        )
    except HttpFailure as exc:
        raise _device_error(device, exc) from None
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()
    if not der:
        raise BadReplyError(f"{where} presented no certificate", device=device.name)
    return der


def _device_error(device: Device, exc: HttpFailure) -> DeviceError:
    """What an HTTP failure with ``device`` is, in certfleet's error tree."""
    error = failure_error(exc, where=device.address or device.name,
                          trust=str(device.verify), setting="the trust setting (verify:)")
    return error.with_context(device=device.name)


class LocalClients:
    """Makes the devices' HTTP clients. TLS contexts are built once per trust setting and
    shared (:func:`ssl_context_for`); each device gets its own small client: one device's
    calls are sequential, and a pool shared by the fleet costs more per request the larger
    the fleet (httpcore scanned every connection of its pool on each request; a 300-device
    status spent most of its CPU there)."""

    def __init__(self, *, timeouts: Timeouts | None = None) -> None:
        self.timeouts = timeouts or Timeouts()

    def device_client(self, verify: Verify) -> HttpClient:
        """A new client for one device (one keep-alive connection); the caller closes
        it — :class:`LocalTransport` does when given ``owns_client=True``."""
        return StreamClient(
            ssl_context_for(verify),
            connect_timeout=self.timeouts.connect,
            read_timeout=self.timeouts.read,
            pin_sha256=verify.pin_sha256 if verify.mode == "pin" else None,
        )


# ------------------------------------------------------------------------- transport


class LocalTransport:
    """xAPI over one device's HTTPS putxml/getxml."""

    name = "local"

    def __init__(
        self,
        device: Device,
        client: HttpClient,
        password: Secret,
        *,
        retry: RetryPolicy | None = None,
        recorder: Recorder | None = None,
        owns_client: bool = False,
        login: LoginGuard | None = None,
    ) -> None:
        if not device.host:
            raise InputError(f"device {device.name} has no host (transport: local)")
        self.device = device
        #: the run's guard for this account on this device (see fleet.xapi._login)
        self._login = login or LoginGuard(device_label(device))
        self._client = client
        self._owns_client = owns_client
        self._password = password
        self._retry = retry or RetryPolicy()
        self._recorder = recorder
        self.base_url = f"https://{bracket_host(device.host)}:{device.port}"
        self._session: str | None = None
        self._basic_only = False
        self._relogged = False

    # -- session ---------------------------------------------------------------------

    def _auth(self) -> str:
        """The basic-auth header value (sent, never recorded: exchanges hold no headers;
        registered as a secret, so an error text quoting the header is masked)."""
        pair = f"{self.device.username or ''}:{self._password.reveal()}".encode()
        token = base64.b64encode(pair).decode("ascii")
        register_secret(token)
        return "Basic " + token

    async def __aenter__(self) -> LocalTransport:
        try:
            await self.begin_session()
        except BaseException:
            if self._owns_client:  # __aexit__ is not called when entering fails
                await self._client.aclose()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await self.end_session()
        finally:
            if self._owns_client:
                await self._client.aclose()

    async def begin_session(self) -> None:
        exchange = Exchange(kind="session", path="xmlapi/session/begin")
        with recorded(exchange, self._recorder, self.device.name):
            response = await self._send(
                "POST", "/xmlapi/session/begin", exchange, auth=True, idempotent=True,
                content=b"",
            )
            if response.status in (401, 403, 503):
                self._check_status(response)
            if response.status in (200, 204):
                cookie = response.cookies.get("SessionId")
                if not cookie:
                    raise BadReplyError(
                        f"session begin answered {response.status} without a SessionId cookie"
                    )
                if not _COOKIE_VALUE.fullmatch(cookie):
                    # it goes back in a Cookie header: a CR or LF would add headers of the
                    # device's choosing to every request
                    raise BadReplyError(
                        "session begin answered a SessionId cookie with characters a cookie "
                        "cannot hold (control characters, spaces, quotes, commas or "
                        "semicolons); refused"
                    )
                self._session = cookie
            elif response.status in (301, 302, 303, 307, 308, 404):
                # No XML API sessions on this device (TC-era firmware): basic auth per request.
                self._basic_only = True
            else:
                raise BadReplyError(f"session begin answered HTTP {response.status}")

    async def end_session(self) -> None:
        if self._session is None:
            return
        exchange = Exchange(kind="session", path="xmlapi/session/end")
        started = time.perf_counter()
        try:
            # Bounded: a device that stopped answering must not hold the run (or a timed-out
            # device's clean-up) for the full read timeout.
            async with asyncio.timeout(SESSION_END_TIMEOUT):
                response = await self._client.request(
                    "POST",
                    self.base_url + "/xmlapi/session/end",
                    headers={"Cookie": f"SessionId={self._session}"},
                    body=b"",
                )
            exchange.http_status = response.status
            exchange.ok = response.status < 400
        except (HttpFailure, TimeoutError) as exc:
            # The device is gone or busy; its session cap frees the slot when it restarts.
            exchange.error = redact(f"{type(exc).__name__}: {exc}")
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
        exchange = Exchange.command(path, params, body)
        document = _xml.build_command(path, params, body)

        def parse(response: HttpReply) -> dict[str, Any]:
            return _xml.parse_command_reply(response.body, path)

        result: dict[str, Any] = await self._call(
            exchange, "POST", "/putxml", document, idempotent, parse
        )
        return result

    async def get(self, path: Sequence[str | int]) -> Any:
        location = _xml.getxml_location(path)
        exchange = Exchange(kind="get", path=location.lstrip("/"))

        def parse(response: HttpReply) -> Any:
            return _xml.parse_get_reply(response.body, path)

        return await self._call(
            exchange, "GET", "/getxml", None, True, parse, query={"location": location}
        )

    async def configure(self, path: Sequence[str | int], value: str) -> None:
        exchange = Exchange.configure(path, value)
        document = _xml.build_configuration(path, value)

        def parse(response: HttpReply) -> None:
            _xml.parse_configuration_reply(response.body, path)

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
        with recorded(exchange, self._recorder, self.device.name):
            response = await self._send(
                method, url, exchange, content=content, idempotent=idempotent, query=query
            )
            if response.status == 401 and self._session is not None and not self._relogged:
                # The session is gone (device rebooted, session terminated): log in once more.
                # A wrong password fails this single login and is not tried again.
                self._relogged = True
                self._session = None
                await self.begin_session()
                response = await self._send(
                    method, url, exchange, content=content, idempotent=idempotent, query=query
                )
            self._check_status(response)
            if len(response.body) > _xml.PARSE_OFF_LOOP_BYTES:
                # a large reply takes a while to parse: the other devices' calls go on
                result = await asyncio.to_thread(parse, response)
            else:
                result = parse(response)
            return result

    def _check_status(self, response: HttpReply) -> None:
        status = response.status
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
    ) -> HttpReply:
        headers: dict[str, str] = {}
        if content:
            headers["Content-Type"] = "text/xml; charset=utf-8"
        use_basic = auth or self._basic_only or self._session is None
        if use_basic:
            headers["Authorization"] = self._auth()
        else:
            headers["Cookie"] = f"SessionId={self._session}"
        # Credentials (a session begin, or every request of a basic-auth device) are sent
        # again only as fleet.xapi._login allows: never after a lost answer until the device
        # has accepted them, never after a refusal.
        login = self._login if use_basic else None
        backoff = Backoff(self._retry)
        while True:
            exchange.attempts = backoff.attempt + 1
            if login is not None:
                await login.acquire()
            try:
                response = await self._client.request(
                    method, self.base_url + url, headers=headers, body=content, query=query
                )
                exchange.http_status = response.status
            except HttpFailure as exc:
                error = _device_error(self.device, exc)
                retryable = after_failure(
                    login, error, sent=exc.sent,
                    retryable=not isinstance(exc, TlsRejected) and (idempotent or not exc.sent),
                )
                if retryable and backoff.more:
                    await backoff.pause()
                    continue
                raise error from None
            except BaseException:
                if login is not None:
                    login.lost()  # cancelled (the device's time ran out) with the request out
                raise
            if login is not None:
                if response.status == 401:
                    login.refused(f"login as {self.device.username!r} refused (HTTP 401)")
                elif 200 <= response.status < 300 or response.status == 403:
                    login.accepted()  # 403: the account is right, its role is not
                else:
                    login.no_verdict()
            if response.status == 503 and backoff.more:
                # Queue full: the request was not processed. Honour Retry-After if given.
                await backoff.pause(response.headers.get("retry-after"))
                continue
            return response

    def _record(self, exchange: Exchange) -> None:
        if self._recorder is not None:
            self._recorder(exchange)
