"""fleet.xapi.websocket — the device's JSON-RPC xAPI over one WebSocket (``wss://host/ws``).

Facts that shape this module (reference: roomos-local-xapi.md §3):

* One connection per device for the whole run: opened in ``__aenter__``, closed in
  ``__aexit__``. Calls are JSON-RPC 2.0 requests with integer ids; several may be in flight at
  once, and a single reader task hands each reply to the call waiting for that id.
* Login happens once, in the HTTP upgrade: ``Authorization: Basic`` by default, or the
  ``auth-<base64url(user:pass), no padding>`` subprotocol (what browsers must use) when asked.
  A refused login (403, or 401) is never retried: RoomOS locks the account after 5 failures.
  502 (device restarting behind its proxy) and 503 (connection rate limit) are retried with
  exponential backoff and full jitter, as are connection failures; anything else is a device
  that does not offer the WebSocket API.
* TLS is verified as the inventory says, with the TLS context shared per ``verify:`` setting.
  A pinned certificate is checked by aiohttp's :class:`~aiohttp.Fingerprint` right after the
  TLS handshake and before a byte of HTTP — so before any credential — is sent. Redirects of
  the upgrade are refused, never followed.
* When the socket drops (a device reboot, say) the next call reconnects, once per call, after a
  backoff. A call whose request was already sent is repeated on the new connection only if it
  is idempotent: a write whose reply was lost may have been carried out.
* Replies are normalised exactly like the HTTP transport's (leaves are ``str``, ``Details``
  always a list of structures); JSON-RPC errors map onto :mod:`fleet.errors`.

Device traffic never uses proxies from the environment and keeps no cookies.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import ssl
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

import aiohttp

from ..errors import (
    AuthError,
    BadReplyError,
    InputError,
    ParameterError,
    TimeoutError_,
    TransportError,
)
from ..inventory import Device
from ..secrets import Secret, redact, register_secret
from ._config import USER_AGENT, Backoff, RetryPolicy, Timeouts, bracket_host
from ._jsonrpc import (
    MISSING,
    NOT_READY,
    ConnectionLost,
    JsonRpcCommandError,
    JsonRpcNotSupportedError,
    Link,
    RpcError,
    command_result,
    decode,
    rpc_error,
)
from ._login import LoginGuard, after_failure, device_label
from ._ws_upgrade import (
    Redirected,
    auth_subprotocol,
    handshake_error,
    refuse_redirect,
    upgrade_was_answered_or_never_sent,
)
from ._xml import PARSE_OFF_LOOP_BYTES
from .transport import (
    Exchange,
    ParamValue,
    Recorder,
    normalise_json,
    recorded,
    xpath,
)

__all__ = [
    "CLOSE_TIMEOUT",
    "JsonRpcCommandError",
    "JsonRpcNotSupportedError",
    "WebSocketTransport",
    "auth_subprotocol",
]

#: closing a connection never holds a run (or a timed-out device's clean-up) longer than this
CLOSE_TIMEOUT: Final = 5.0
#: the largest reply accepted (a Services Show of a device full of chains is a few hundred KiB)
MAX_MESSAGE: Final = 16 * 1024 * 1024


class WebSocketTransport:
    """xAPI over one device's JSON-RPC WebSocket."""

    name = "websocket"

    def __init__(
        self,
        device: Device,
        password: Secret,
        *,
        ssl_context: ssl.SSLContext,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        recorder: Recorder | None = None,
        subprotocol_auth: bool = False,
        login: LoginGuard | None = None,
    ) -> None:
        if not device.host:
            raise InputError(f"device {device.name} has no host (transport: websocket)")
        self.device = device
        #: the run's guard for this account on this device (see fleet.xapi._login)
        self._login_guard = login or LoginGuard(device_label(device))
        self._password = password
        self._ssl = ssl_context
        self._timeouts = timeouts or Timeouts()
        self._retry = retry or RetryPolicy()
        self._recorder = recorder
        #: log in with the ``auth-`` subprotocol instead of the Authorization header
        self.subprotocol_auth = subprotocol_auth
        self.url = f"wss://{bracket_host(device.host)}:{device.port}/ws"
        self._where = device.address or device.name
        self._fingerprint: aiohttp.Fingerprint | None = None
        if device.verify.mode == "pin":
            assert device.verify.pin_sha256
            self._fingerprint = aiohttp.Fingerprint(bytes.fromhex(device.verify.pin_sha256))
        self._session: aiohttp.ClientSession | None = None
        self._link: Link | None = None
        self._connect_lock = asyncio.Lock()
        self._ids = itertools.count(1)
        self._closing = False
        #: a refused login: never tried again by this transport (the account would lock)
        self._refused: AuthError | None = None

    # -- connection ------------------------------------------------------------------

    async def __aenter__(self) -> WebSocketTransport:
        self._closing = False
        self._session = self._new_session()
        try:
            self._link = await self._open("ws")
        except BaseException:
            session, self._session = self._session, None
            await session.close()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._closing = True
        link, self._link = self._link, None
        session, self._session = self._session, None
        try:
            if link is not None:
                exchange = Exchange(kind="session", path="ws/close")
                started = time.perf_counter()
                try:
                    exchange.ok = await self._drop(link, "closed by certfleet")
                    if not exchange.ok:
                        exchange.error = "the connection was already closed"
                finally:
                    exchange.duration_ms = (time.perf_counter() - started) * 1000
                    self._record(exchange)
        finally:
            if session is not None:
                await session.close()

    def _new_session(self) -> aiohttp.ClientSession:
        # With a pin, the connector checks the certificate's SHA-256 right after the TLS
        # handshake, before the upgrade request (and its credentials) is written; the TLS
        # context itself still comes from the request (ws_connect(ssl=...)).
        connector = aiohttp.TCPConnector(
            ssl=self._fingerprint if self._fingerprint is not None else self._ssl,
            limit=0,
            force_close=True,
        )
        redirects = aiohttp.TraceConfig()
        redirects.on_request_redirect.append(refuse_redirect)
        return aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
            timeout=aiohttp.ClientTimeout(
                total=None,
                connect=self._timeouts.connect,
                sock_connect=self._timeouts.connect,
                sock_read=self._timeouts.read,
            ),
            headers={"User-Agent": USER_AGENT},
            trace_configs=[redirects],
        )

    def _login(self) -> tuple[dict[str, str], tuple[str, ...]]:
        # both forms are registered as secrets: an error text quoting them is masked
        username = self.device.username or ""
        if self.subprotocol_auth:
            protocol = auth_subprotocol(username, self._password.reveal())
            register_secret(protocol)
            return {}, (protocol,)
        token = base64.b64encode(f"{username}:{self._password.reveal()}".encode()).decode()
        register_secret(token)
        return {"Authorization": f"Basic {token}"}, ()

    async def _open(self, path: str) -> Link:
        """Connect and log in, retrying what is safe to retry; record it as a session call."""
        assert self._session is not None
        exchange = Exchange(kind="session", path=path)
        backoff = Backoff(self._retry)
        with recorded(exchange, self._recorder, self.device.name):
            while True:
                exchange.attempts = backoff.attempt + 1
                headers, protocols = self._login()
                guard = self._login_guard
                await guard.acquire()  # the upgrade carries the credentials
                try:
                    ws = await self._session.ws_connect(
                        self.url,
                        headers=headers,
                        protocols=protocols,
                        ssl=self._ssl,
                        autoclose=True,
                        autoping=True,
                        compress=0,
                        max_msg_size=MAX_MESSAGE,
                    )
                except (aiohttp.ClientError, OSError, Redirected) as exc:
                    error, retryable, retry_after = handshake_error(
                        exc, exchange, device=self.device, where=self._where,
                        read_timeout=self._timeouts.read)
                    error.message = redact(error.message)  # aiohttp's text may quote a header
                    if isinstance(error, AuthError):
                        self._refused = error
                        guard.refused(error.message)
                        retryable = False
                    else:
                        retryable = after_failure(
                            guard, error, retryable=retryable,
                            sent=not upgrade_was_answered_or_never_sent(exc))
                    if not retryable or not backoff.more:
                        raise error from exc
                    await backoff.pause(retry_after)
                    continue
                except BaseException:
                    guard.lost()  # cancelled with the upgrade out: it may have counted
                    raise
                guard.accepted()
                exchange.http_status = 101
                break
            link = Link(ws)
            link.reader = asyncio.create_task(self._read(link), name=f"ws-reader {self.url}")
            return link

    async def _reconnect(self, old: Link | None) -> Link:
        """A new connection in place of ``old``; concurrent callers share one reconnection."""
        async with self._connect_lock:
            current = self._link
            if current is not None and current is not old and current.lost is None:
                return current  # another call reconnected meanwhile
            if self._closing or self._session is None:
                raise TransportError("the connection is closed")
            if self._refused is not None:
                raise AuthError(f"{self._refused.message} (refused earlier in this run)")
            if old is not None:
                await self._drop(old, old.lost or "replaced")
            await asyncio.sleep(self._retry.delay(0))
            self._link = await self._open("ws/reconnect")
            return self._link

    async def _drop(self, link: Link, why: str) -> bool:
        """Close ``link`` (bounded in time); calls still waiting on it fail. True when the
        close handshake completed."""
        link.lost = link.lost or why
        closed = False
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                closed = await link.ws.close()
        except (TimeoutError, aiohttp.ClientError, OSError):
            closed = False
        if link.reader is not None:
            if not link.reader.done():
                link.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await link.reader
        link.fail_pending(ConnectionLost(link.lost))
        return closed

    async def _read(self, link: Link) -> None:
        """The one reader of a connection: hands each reply to the call with its id."""
        why = "the device closed the connection"
        try:
            while True:
                message = await link.ws.receive()
                if message.type is aiohttp.WSMsgType.TEXT:
                    text = str(message.data)
                    if len(text) > PARSE_OFF_LOOP_BYTES:
                        # a large reply takes a while to decode: the other devices' calls go on
                        link.dispatch(text, await asyncio.to_thread(decode, text))
                    else:
                        link.dispatch(text)
                elif message.type is aiohttp.WSMsgType.BINARY:
                    size = len(message.data) if isinstance(message.data, bytes) else 0
                    link.garbage(f"a binary frame of {size} bytes")
                elif message.type is aiohttp.WSMsgType.ERROR:
                    why = redact(f"the connection broke: {link.ws.exception() or message.data}")
                    break
                elif message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING,
                                      aiohttp.WSMsgType.CLOSED):
                    code = link.ws.close_code
                    why = "the device closed the connection" + (f" (code {code})" if code
                                                                else "")
                    break
        except asyncio.CancelledError:
            why = "closed by certfleet"
            raise
        except Exception as exc:  # the reader must never die silently with calls waiting
            why = redact(f"the connection broke: {type(exc).__name__}: {exc}")
        finally:
            link.lost = link.lost or why
            link.fail_pending(ConnectionLost(link.lost))

    # -- calls -----------------------------------------------------------------------

    async def command(
        self,
        path: Sequence[str],
        params: Mapping[str, ParamValue] | None = None,
        body: str | None = None,
        *,
        idempotent: bool = False,
    ) -> dict[str, Any]:
        if not path:
            raise ParameterError("empty xAPI command path", reason="empty path")
        where = xpath(path)
        exchange = Exchange.command(path, params, body)
        wire: dict[str, Any] = {}
        for key, value in (params or {}).items():
            wire[key] = value if isinstance(value, (str, int)) else list(value)
        if body is not None:
            wire["body"] = body
        result = await self._call(exchange, f"xCommand/{where}", wire, idempotent, command=True)
        return command_result(result, where)

    async def get(self, path: Sequence[str | int]) -> Any:
        exchange = Exchange.read(path)
        result = await self._call(exchange, "xGet", {"Path": list(path)}, True, read=True)
        return None if result is MISSING else normalise_json(result)

    async def configure(self, path: Sequence[str | int], value: str) -> None:
        exchange = Exchange.configure(path, value)
        result = await self._call(exchange, "xSet", {"Path": list(path), "Value": value}, True)
        if result is False:
            raise BadReplyError(f"xSet {exchange.path} answered false",
                                device=self.device.name, xpath=exchange.path)

    async def _call(
        self,
        exchange: Exchange,
        method: str,
        params: dict[str, Any],
        idempotent: bool,
        *,
        command: bool = False,
        read: bool = False,
    ) -> Any:
        with recorded(exchange, self._recorder, self.device.name):
            try:
                return await self._rpc(exchange, method, params, idempotent, command)
            except ParameterError as exc:
                if not (read and "no match" in exc.reason.lower()):
                    raise
                # "No match on Path argument": the device has no such node; the HTTP
                # transport answers None for that too
                return MISSING

    async def _rpc(
        self,
        exchange: Exchange,
        method: str,
        params: dict[str, Any],
        idempotent: bool,
        command: bool,
    ) -> Any:
        # One loop, kept whole: a call's life on a connection that may drop at any await
        # (reconnect once, resend only what is idempotent, back off on "not ready").
        if self._session is None:
            raise TransportError("the transport is not open (use it with async with)")
        reconnected = False
        not_ready = 0
        sends = 0
        while True:
            link = self._link
            if link is None or link.lost is not None:
                if reconnected:
                    raise TransportError(
                        f"{link.lost if link else 'no connection'}; already reconnected once "
                        "for this call")
                link = await self._reconnect(link)
                reconnected = True
            request_id = next(self._ids)
            text = json.dumps(
                {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params},
                ensure_ascii=False, separators=(",", ":"),
            )
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            link.pending[request_id] = future
            try:
                try:
                    async with link.send_lock:
                        if link.lost is not None:
                            continue  # dropped before this was sent: reconnect and send it
                        sends += 1
                        exchange.attempts = sends
                        await link.ws.send_str(text)
                except (ConnectionError, aiohttp.ClientError) as exc:
                    # aiohttp refuses to write to a closing transport: nothing went out
                    link.lost = link.lost or redact(
                        f"the connection broke: {exc or type(exc).__name__}")
                    continue
                try:
                    async with asyncio.timeout(self._timeouts.read):
                        return await future
                except TimeoutError:
                    raise TimeoutError_(
                        f"no reply to {method} within {self._timeouts.read:g}s") from None
            except ConnectionLost as lost:
                if not idempotent:
                    raise TransportError(
                        f"{lost.why} after {method} was sent; not repeated, since the device "
                        "may have carried it out") from None
                if reconnected:
                    raise TransportError(
                        f"{lost.why}; already reconnected once for this call") from None
                continue
            except RpcError as err:
                if err.code == NOT_READY and not_ready + 1 < self._retry.attempts:
                    # not processed at all: safe to send again, after a backoff
                    await asyncio.sleep(self._retry.delay(not_ready))
                    not_ready += 1
                    continue
                raise rpc_error(err, exchange.path, method, command=command,
                                username=self.device.username) from None
            finally:
                link.pending.pop(request_id, None)

    def _record(self, exchange: Exchange) -> None:
        if self._recorder is not None:
            self._recorder(exchange)
