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
from types import SimpleNamespace
from typing import Any, Final

import aiohttp

from fleet.errors import (
    AuthError,
    BadReplyError,
    CommandError,
    DeviceError,
    NotSupportedError,
    ParameterError,
    RateLimitedError,
    TimeoutError_,
    TlsVerifyError,
    TransportError,
    UnreachableError,
)
from fleet.inventory import Device
from fleet.secrets import Secret, redact, register_secret
from fleet.xapi._config import RetryPolicy, Timeouts
from fleet.xapi._login import NOT_RESENT, LoginGuard
from fleet.xapi._xml import PARSE_OFF_LOOP_BYTES
from fleet.xapi.transport import (
    MAX_JSON_DEPTH,
    SECRET_PARAMS,
    Exchange,
    ParamValue,
    Recorder,
    xpath,
)

__all__ = [
    "CLOSE_TIMEOUT",
    "JsonRpcCommandError",
    "JsonRpcNotSupportedError",
    "WebSocketTransport",
    "auth_subprotocol",
]

_USER_AGENT: Final = "certfleet/0.1"
#: closing a connection never holds a run (or a timed-out device's clean-up) longer than this
CLOSE_TIMEOUT: Final = 5.0
#: the largest reply accepted (a Services Show of a device full of chains is a few hundred KiB)
MAX_MESSAGE: Final = 16 * 1024 * 1024

# JSON-RPC error codes RoomOS uses (pyxows EXCEPTION_TYPES, reference §3.3)
_COMMAND_ERROR: Final = 1
_PARSE_ERROR: Final = -32700
_INVALID_REQUEST: Final = -32600
_METHOD_NOT_FOUND: Final = -32601
_INVALID_PARAMS: Final = -32602
_INTERNAL_ERROR: Final = -32603
_PERMISSION_DENIED: Final = -31999
_SUBSCRIPTIONS_EXCEEDED: Final = -31998
_NOT_READY: Final = -31997
_CODE_NAMES: Final = {
    _PARSE_ERROR: "parse error",
    _INVALID_REQUEST: "invalid request",
    _INTERNAL_ERROR: "internal error",
    _SUBSCRIPTIONS_EXCEEDED: "subscription count exceeded",
    _NOT_READY: "system not ready",
}


def auth_subprotocol(username: str, password: str) -> str:
    """``auth-<base64url(user:pass)>`` without padding: the browser-style WebSocket login."""
    raw = base64.urlsafe_b64encode(f"{username}:{password}".encode()).decode("ascii")
    return "auth-" + raw.rstrip("=")


class JsonRpcCommandError(CommandError):
    """The device refused a call with a JSON-RPC error: its ``code`` and ``data`` as sent."""

    def __init__(
        self,
        message: str,
        *,
        code: int,
        data: Any = None,
        xpath: str | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message, xpath=xpath, reason=reason)
        self.code = code
        self.data = data


class JsonRpcNotSupportedError(JsonRpcCommandError, NotSupportedError):
    """JSON-RPC -32601: the device has no such command (method not found)."""


#: what a read of a node the device does not have gives (``get`` returns None for it)
_MISSING: Final = object()


class _RpcError(Exception):
    """An ``error`` member in a reply; mapped onto fleet.errors by the call that got it."""

    def __init__(self, code: int, message: str, data: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


class _ConnectionLost(Exception):
    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class _Redirected(Exception):
    def __init__(self, status: int, location: str) -> None:
        super().__init__(status, location)
        self.status = status
        self.location = location


async def _refuse_redirect(
    session: aiohttp.ClientSession,
    context: SimpleNamespace,
    params: aiohttp.TraceRequestRedirectParams,
) -> None:
    # Called before aiohttp follows a redirect: stop there, so the login never goes elsewhere.
    raise _Redirected(params.response.status, params.response.headers.get("Location", ""))


def _upgrade_was_answered_or_never_sent(exc: BaseException) -> bool:
    """Whether a failed upgrade certainly did not count as a failed login: the device
    answered it with a status other than a refusal, or it never left this machine (no
    connection, TLS failed or the pin did not match before a byte of HTTP)."""
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        return exc.status not in (401, 403, 101)
    return isinstance(exc, (_Redirected, aiohttp.ServerFingerprintMismatch,
                            aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError))


_Decoded = tuple[Any, str | None]


def _decode(text: str) -> _Decoded:
    """(the JSON of a message, None) or (None, what is wrong with it)."""
    try:
        return json.loads(text), None
    except RecursionError:
        return None, f"a reply nested deeper than JSON can be read ({len(text)} characters)"
    except ValueError:
        return None, f"a reply that is not JSON: {text[:60]!r}"


class _Link:
    """One open WebSocket and the calls waiting for their reply on it."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse[bool]) -> None:
        self.ws = ws
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.lost: str | None = None  # why the connection is unusable, once it is
        self.reader: asyncio.Task[None] | None = None
        self.send_lock = asyncio.Lock()

    def fail_pending(self, error: Exception) -> None:
        pending, self.pending = self.pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)


# ------------------------------------------------------------------------ normalising


def _normalise(value: Any, *, item: bool = False, depth: int = 0) -> Any:
    """JSON reply data → the form every transport gives: leaves ``str``, structures ``dict``,
    lists ``list``. The ``id`` of a list item is its index (the XML ``item=`` attribute), not
    data, and is dropped as the XML transport drops ``item``."""
    if depth > MAX_JSON_DEPTH and isinstance(value, dict | list):
        raise BadReplyError(f"refused a reply nested more than {MAX_JSON_DEPTH} deep")
    if isinstance(value, dict):
        return {
            str(key): _normalise(child, depth=depth + 1)
            for key, child in value.items()
            if not (item and key == "id")
        }
    if isinstance(value, list):
        return [_normalise(child, item=True, depth=depth + 1) for child in value]
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _command_result(result: Any, where: str) -> dict[str, Any]:
    if result is None or result is True:
        return {}
    if not isinstance(result, dict):
        raise BadReplyError(f"result of {where} is not an object: {json.dumps(result)[:60]}")
    if isinstance(result.get("Details"), dict):
        result = {**result, "Details": [result["Details"]]}  # one item is still a list
    data: dict[str, Any] = _normalise(result)
    # A result may carry the XML result element's status as a field (jsxapi's rpc.ts)
    status = data.pop("status", "OK")
    if status == "Error":
        reason = _leaf(data.get("Reason")) or _leaf(data.get("Error")) or "error"
        raise CommandError(reason, xpath=_leaf(data.get("XPath")) or where, reason=reason)
    if status == "ParameterError":
        reason = _leaf(data.get("Reason")) or "invalid or missing parameter"
        raise ParameterError(f"parameter error: {reason}", xpath=where, reason=reason)
    if status != "OK":
        raise BadReplyError(f"result of {where} has status {status!r}")
    return data


def _leaf(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("Value")
    return value if isinstance(value, str) and value else None


def _describe_data(data: Any) -> str:
    if data is None:
        return ""
    try:
        text = json.dumps(data, ensure_ascii=False, sort_keys=True, default=str)
    except (RecursionError, ValueError, TypeError):
        return " (data too deeply nested to show)"
    return f" ({text[:200]})"


# -------------------------------------------------------------------------- transport


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
            raise ValueError(f"device {device.name} has no host")
        self.device = device
        #: the run's guard for this account on this device (see fleet.xapi._login)
        self._login_guard = login or LoginGuard(
            f"{device.username}@{device.host}:{device.port}")
        self._password = password
        self._ssl = ssl_context
        self._timeouts = timeouts or Timeouts()
        self._retry = retry or RetryPolicy()
        self._recorder = recorder
        #: log in with the ``auth-`` subprotocol instead of the Authorization header
        self.subprotocol_auth = subprotocol_auth
        host = device.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # IPv6 literal
        self.url = f"wss://{host}:{device.port}/ws"
        self._where = f"{host}:{device.port}"
        self._fingerprint: aiohttp.Fingerprint | None = None
        if device.verify.mode == "pin":
            assert device.verify.pin_sha256
            self._fingerprint = aiohttp.Fingerprint(bytes.fromhex(device.verify.pin_sha256))
        self._session: aiohttp.ClientSession | None = None
        self._link: _Link | None = None
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
        redirects.on_request_redirect.append(_refuse_redirect)
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
            headers={"User-Agent": _USER_AGENT},
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

    async def _open(self, path: str) -> _Link:
        """Connect and log in, retrying what is safe to retry; record it as a session call."""
        assert self._session is not None
        exchange = Exchange(kind="session", path=path)
        started = time.perf_counter()
        attempt = 0
        try:
            while True:
                exchange.attempts = attempt + 1
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
                except (aiohttp.ClientError, OSError, _Redirected) as exc:
                    error, retryable, wait = self._handshake_error(exc, exchange)
                    error.message = redact(error.message)  # aiohttp's text may quote a header
                    if isinstance(error, AuthError):
                        self._refused = error
                        guard.refused(error.message)
                    elif _upgrade_was_answered_or_never_sent(exc):
                        guard.no_verdict()
                    else:
                        guard.lost()
                        if not guard.may_resend:
                            if retryable:
                                error.message += NOT_RESENT
                            retryable = False
                    if not retryable or attempt + 1 >= self._retry.attempts:
                        raise error from exc
                    await asyncio.sleep(max(self._retry.delay(attempt), wait))
                    attempt += 1
                    continue
                except BaseException:
                    guard.lost()  # cancelled with the upgrade out: it may have counted
                    raise
                guard.accepted()
                exchange.http_status = 101
                break
            link = _Link(ws)
            link.reader = asyncio.create_task(self._read(link), name=f"ws-reader {self.url}")
            exchange.ok = True
            return link
        except DeviceError as exc:
            exchange.error = exc.message
            raise exc.with_context(device=self.device.name, xpath=path) from None
        finally:
            exchange.duration_ms = (time.perf_counter() - started) * 1000
            self._record(exchange)

    def _handshake_error(
        self, exc: BaseException, exchange: Exchange
    ) -> tuple[DeviceError, bool, float]:
        """(error, whether another attempt is safe and useful, minimum wait before it)."""
        where = self._where
        if isinstance(exc, aiohttp.WSServerHandshakeError):
            status = exc.status
            exchange.http_status = status
            if status in (401, 403):
                return AuthError(
                    f"login as {self.device.username!r} refused (HTTP {status}): wrong "
                    "username or password, or the account is locked after failed logins; not "
                    "retried, to avoid locking the account"
                ), False, 0.0
            if status == 502:
                return UnreachableError(
                    f"{where} answered HTTP 502 to the WebSocket upgrade: the device is "
                    "probably restarting"
                ), True, 0.0
            if status == 503:
                retry_after = exc.headers.get("Retry-After", "") if exc.headers else ""
                wait = min(float(retry_after), self._retry.cap * 4) if retry_after.isdigit() \
                    else 0.0
                return RateLimitedError(
                    "device refused the WebSocket connection (HTTP 503, connection rate "
                    "limit) after retries"
                ), True, wait
            if status == 101:
                return BadReplyError(f"invalid WebSocket handshake from {where}: {exc.message}"
                                     ), False, 0.0
            return BadReplyError(
                f"{where} answered HTTP {status} to the WebSocket upgrade: is its WebSocket "
                "API on (NetworkServices Websocket: FollowHTTPService, HTTP Mode not Off)?"
            ), False, 0.0
        if isinstance(exc, _Redirected):
            exchange.http_status = exc.status
            return BadReplyError(
                f"{where} redirected the WebSocket upgrade (HTTP {exc.status}) to "
                f"{exc.location!r}; redirects are not followed"
            ), False, 0.0
        if isinstance(exc, aiohttp.ServerFingerprintMismatch):
            return TlsVerifyError(
                f"TLS pin check failed for {where}: certificate SHA-256 {exc.got.hex()} does "
                f"not match the pinned {exc.expected.hex()}"
            ), False, 0.0
        if isinstance(exc, aiohttp.ClientConnectorCertificateError):
            return TlsVerifyError(
                f"TLS certificate of {where} did not verify against {self.device.verify}: "
                f"{exc.certificate_error}; fix the trust setting (verify:) rather than turning "
                "checks off"
            ), False, 0.0
        if isinstance(exc, aiohttp.ClientSSLError):
            return UnreachableError(f"TLS handshake with {where} failed: {exc}"), True, 0.0
        if isinstance(exc, aiohttp.ClientConnectorError):
            return UnreachableError(f"cannot connect to {where}: {exc.os_error}"), True, 0.0
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return UnreachableError(f"connection to {where} timed out"), True, 0.0
        if isinstance(exc, TimeoutError):
            return TimeoutError_(
                f"no answer to the WebSocket upgrade from {where} within "
                f"{self._timeouts.read:g}s"
            ), True, 0.0
        return TransportError(
            f"connection to {where} broke during the WebSocket upgrade: "
            f"{exc or type(exc).__name__}"
        ), True, 0.0

    async def _reconnect(self, old: _Link | None) -> _Link:
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

    async def _drop(self, link: _Link, why: str) -> bool:
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
        link.fail_pending(_ConnectionLost(link.lost))
        return closed

    async def _read(self, link: _Link) -> None:
        """The one reader of a connection: hands each reply to the call with its id."""
        why = "the device closed the connection"
        try:
            while True:
                message = await link.ws.receive()
                if message.type is aiohttp.WSMsgType.TEXT:
                    text = str(message.data)
                    if len(text) > PARSE_OFF_LOOP_BYTES:
                        # a large reply takes a while to decode: the other devices' calls go on
                        self._dispatch(link, text, await asyncio.to_thread(_decode, text))
                    else:
                        self._dispatch(link, text)
                elif message.type is aiohttp.WSMsgType.BINARY:
                    size = len(message.data) if isinstance(message.data, bytes) else 0
                    self._garbage(link, f"a binary frame of {size} bytes")
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
            link.fail_pending(_ConnectionLost(link.lost))

    def _dispatch(self, link: _Link, text: str, decoded: _Decoded | None = None) -> None:
        reply, problem = decoded or _decode(text)
        if problem is not None:
            self._garbage(link, problem)
            return
        if not isinstance(reply, dict):
            self._garbage(link, f"a reply that is not a JSON-RPC object: {text[:60]!r}")
            return
        raw_id = reply.get("id")
        if raw_id is None:
            if "method" in reply and "error" not in reply:
                return  # a notification (xFeedback/Event): nobody here subscribes
            error = reply.get("error")
            if isinstance(error, dict):
                self._garbage(link, f"error {error.get('code')!r} ({error.get('message')!r}) "
                                    "for no request id")
            else:
                self._garbage(link, f"a reply without an id: {text[:60]!r}")
            return
        request_id = raw_id if isinstance(raw_id, int) and not isinstance(raw_id, bool) else (
            int(raw_id) if isinstance(raw_id, str) and raw_id.isdigit() else None)
        future = link.pending.pop(request_id, None) if request_id is not None else None
        if future is None or future.done():
            return  # the reply to a call that already timed out
        if "error" in reply:
            error = reply["error"]
            code = error.get("code") if isinstance(error, dict) else None
            if not isinstance(code, int) or isinstance(code, bool):
                future.set_exception(BadReplyError(f"malformed JSON-RPC error: {text[:80]!r}"))
                return
            assert isinstance(error, dict)
            future.set_exception(_RpcError(code, str(error.get("message") or ""),
                                           error.get("data")))
        elif "result" in reply:
            future.set_result(reply["result"])
        else:
            future.set_exception(BadReplyError("a JSON-RPC reply with neither result nor error"))

    def _garbage(self, link: _Link, what: str) -> None:
        # A reply that cannot be matched to its call: every call waiting on this connection
        # may have been the one it answered, so each of them fails rather than waiting.
        link.fail_pending(BadReplyError(f"the device sent {what}"))

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
            raise ValueError("empty xAPI command path")
        where = xpath(path)
        exchange = Exchange.command(path, params, body)
        wire: dict[str, Any] = {}
        for key, value in (params or {}).items():
            wire[key] = value if isinstance(value, (str, int)) else list(value)
        if body is not None:
            wire["body"] = body
        result = await self._call(exchange, f"xCommand/{where}", wire, idempotent, command=True)
        return _command_result(result, where)

    async def get(self, path: Sequence[str | int]) -> Any:
        exchange = Exchange(kind="get", path="/".join(str(p) for p in path))
        result = await self._call(exchange, "xGet", {"Path": list(path)}, True, read=True)
        return None if result is _MISSING else _normalise(result)

    async def configure(self, path: Sequence[str | int], value: str) -> None:
        leaf = str(path[-1]) if path else ""
        exchange = Exchange(
            kind="configure",
            path="/".join(str(p) for p in path),
            params={"value": "********" if leaf in SECRET_PARAMS else value},
        )
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
        started = time.perf_counter()
        try:
            result = await self._rpc(exchange, method, params, idempotent, command)
            exchange.ok = True
            return result
        except DeviceError as exc:
            if read and isinstance(exc, ParameterError) and "no match" in exc.reason.lower():
                # "No match on Path argument": the device has no such node; the HTTP
                # transport answers None for that too
                exchange.ok = True
                return _MISSING
            exchange.error = exc.message
            raise exc.with_context(device=self.device.name, xpath=exchange.path) from None
        finally:
            exchange.duration_ms = (time.perf_counter() - started) * 1000
            self._record(exchange)

    async def _rpc(
        self,
        exchange: Exchange,
        method: str,
        params: dict[str, Any],
        idempotent: bool,
        command: bool,
    ) -> Any:
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
            except _ConnectionLost as lost:
                if not idempotent:
                    raise TransportError(
                        f"{lost.why} after {method} was sent; not repeated, since the device "
                        "may have carried it out") from None
                if reconnected:
                    raise TransportError(
                        f"{lost.why}; already reconnected once for this call") from None
                continue
            except _RpcError as err:
                if err.code == _NOT_READY and not_ready + 1 < self._retry.attempts:
                    # not processed at all: safe to send again, after a backoff
                    await asyncio.sleep(self._retry.delay(not_ready))
                    not_ready += 1
                    continue
                raise self._rpc_error(err, exchange.path, method, command) from None
            finally:
                link.pending.pop(request_id, None)

    def _rpc_error(self, err: _RpcError, where: str, method: str, command: bool) -> DeviceError:
        message = err.message or _CODE_NAMES.get(err.code, "no message")
        if err.code == _COMMAND_ERROR:
            return JsonRpcCommandError(message + _describe_data(err.data), code=err.code,
                                       data=err.data, xpath=where, reason=message)
        if err.code == _INVALID_PARAMS:
            return ParameterError(f"parameter error: {message}{_describe_data(err.data)}",
                                  xpath=where, reason=message)
        if err.code == _METHOD_NOT_FOUND:
            if command:
                return JsonRpcNotSupportedError(
                    f"Unknown command ({message or 'method not found'})", code=err.code,
                    data=err.data, xpath=where, reason="Unknown command")
            return JsonRpcCommandError(f"method {method} not found: {message}", code=err.code,
                                       data=err.data, xpath=where, reason=message)
        if err.code == _PERMISSION_DENIED:
            return AuthError(f"permission denied: user {self.device.username!r} lacks the role "
                             f"for {where} ({message})")
        if err.code in (_PARSE_ERROR, _INVALID_REQUEST):
            return BadReplyError(f"the device could not read the request to {where}: "
                                 f"JSON-RPC error {err.code} ({message})")
        return JsonRpcCommandError(
            f"JSON-RPC error {err.code} ({_CODE_NAMES.get(err.code, 'unknown code')}): "
            f"{message}{_describe_data(err.data)}",
            code=err.code, data=err.data, xpath=where, reason=message,
        )

    def _record(self, exchange: Exchange) -> None:
        if self._recorder is not None:
            self._recorder(exchange)
