"""The WebSocket xAPI of one simulated device: `GET /ws`, then JSON-RPC 2.0 messages
(`roomsim/jsonrpc.py`) on the same command registry and state as putxml.

Handshake (reference §3.1): credentials come from an `auth-<base64url(user:pass)>`
subprotocol (padding optional; the offered subprotocol is echoed) or else from an
`Authorization: Basic` header. Missing, malformed or wrong credentials, and a locked-out
user, get HTTP 403; wrong and locked count toward the device's login lockout exactly as
HTTP Basic failures do. Faults act as on HTTP (offline/rebooting: refused; drop: closed;
latency: added; http_status: the handshake answers it), then the Basic rate limit (one
token per handshake; queue full → 503) and the session cap (each socket holds one
session, shared with `/xmlapi/session/begin`; none left → 503).

Messages: each one takes a token of the device's session-rate limiter (shared with HTTP
session requests: 15/s, queue 90); with the queue full it is answered at once with error
-32603 "Too many requests" (a choice: the device's answer is not known). Requests may be
pipelined: each runs in its own task and is answered with its id as soon as it is done,
but commands start in the order they arrived. The `latency` fault delays every message,
`drop` closes the socket without an answer, `garbage` answers non-JSON text; a reboot or
the `offline` fault closes every socket (close code 1001). `xCommand/SystemUnit/Boot`
answers first, then reboots.

Feedback: `xFeedback/Subscribe` (Query may start with Status, Configuration, Event or a
wildcard; at most `MAX_SUBSCRIPTIONS` per device) answers `{"Id": n}`; configuration
changes made by xSet or a putxml `<Configuration>` are sent to every subscription whose
query covers them as `xFeedback/Event` `{"Id": n, "Configuration": {...changed leaves}}`.
Status changes are not notified. `NotifyCurrentValue: true` sends one event with the
current values right after the answer. `xFeedback/Unsubscribe` answers true."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import BasicAuth, WSCloseCode, WSMsgType, hdrs, web

from . import jsonrpc
from .commands import CommandContext, ParameterError, run_command
from .configuration import SCHEMA, accepts
from .jsonrpc import RpcError, Step
from .limits import QueueFull, SessionLimitError

if TYPE_CHECKING:
    from .server import DeviceServer

log = logging.getLogger(__name__)

WS_PATH = "/ws"
AUTH_PREFIX = "auth-"
GARBAGE_TEXT = "<<<%%%garbage\x00 not json %%%>>>"
TOO_MANY_REQUESTS = "Too many requests"
MAX_SUBSCRIPTIONS = 50  # per device, all sockets together (a choice: the real cap is unknown)
CLOSE_TIMEOUT = 1.0


def _plain(status: int, text: str) -> web.Response:
    return web.Response(
        status=status, text=text, headers={"Content-Type": "text/plain; charset=UTF-8"}
    )


def _forbidden() -> web.Response:
    return _plain(403, "403 Forbidden\n")


Credentials = tuple[str, str]  # (user, password)


def handshake_credentials(request: web.BaseRequest) -> tuple[Credentials | None, str | None]:
    """(credentials or None, the `auth-…` subprotocol to echo or None)."""
    offered = [
        part.strip()
        for header in request.headers.getall(hdrs.SEC_WEBSOCKET_PROTOCOL, [])
        for part in header.split(",")
    ]
    protocol = next((p for p in offered if p.startswith(AUTH_PREFIX)), None)
    if protocol is not None:
        return decode_auth_protocol(protocol), protocol
    header = request.headers.get(hdrs.AUTHORIZATION)
    if not header:
        return None, None
    try:
        decoded = BasicAuth.decode(header, encoding="utf-8")
    except ValueError:
        return None, None
    return (decoded.login, decoded.password), None


def decode_auth_protocol(protocol: str) -> Credentials | None:
    """`auth-YWRtaW46c2VjcmV0` → ("admin", "secret"); base64url without padding
    as jsxapi sends it (standard base64, with or without padding, is accepted too)."""
    text = protocol[len(AUTH_PREFIX) :].rstrip("=").replace("-", "+").replace("_", "/")
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, colon, password = raw.partition(":")
    return (user, password) if colon else None


@dataclass(frozen=True)
class Subscription:
    id: int
    steps: list[Step]


class WebSocketHub:
    """The open WebSocket connections of one device server."""

    def __init__(self, server: DeviceServer) -> None:
        self.server = server
        self.connections: set[Connection] = set()

    @property
    def subscription_count(self) -> int:
        return sum(len(c.subscriptions) for c in self.connections)

    async def handshake(self, request: web.BaseRequest) -> web.StreamResponse:
        """Called after the HTTP-level faults: authenticate, upgrade, serve until closed."""
        server = self.server
        credentials, protocol = handshake_credentials(request)
        if credentials is None or not server.login(*credentials):
            return _forbidden()
        ws = web.WebSocketResponse(
            protocols=(protocol,) if protocol else (), timeout=CLOSE_TIMEOUT, heartbeat=None
        )
        if not ws.can_prepare(request).ok:
            return _plain(400, "400 Bad Request: not a WebSocket upgrade\n")
        try:
            await server.basic_limiter.acquire()
        except QueueFull:
            return _plain(503, "503 Service Temporarily Unavailable\n")
        try:
            session_id = server.sessions.open(credentials[0])
        except SessionLimitError as exc:
            return _plain(503, f"{exc}\n")
        try:
            await ws.prepare(request)
            connection = Connection(self, request, ws)
            self.connections.add(connection)
            try:
                await connection.serve()
            finally:
                self.connections.discard(connection)
        finally:
            server.sessions.close(session_id)
        return ws

    async def close_all(self) -> None:
        """The device goes away (reboot, offline, stop): close every socket."""
        await asyncio.gather(*(c.close() for c in list(self.connections)))

    def configuration_changed(self, before: Mapping[str, str]) -> None:
        """Notify subscriptions of the configuration leaves that differ from `before`."""
        config = self.server.device.config
        changed = {jsonrpc.config_path(key) for key in SCHEMA if before.get(key) != config.get(key)}
        if not changed or not self.subscription_count:
            return
        tree = self.server.device.getxml("Configuration")
        for connection in list(self.connections):
            for subscription in list(connection.subscriptions.values()):
                steps = subscription.steps

                def wanted(path: jsonrpc.NodePath, steps: list[Step] = steps) -> bool:
                    return path in changed and jsonrpc.path_matches(steps, path)

                kept = jsonrpc.prune(tree, wanted)
                if kept is not None:
                    message = jsonrpc.event_message(
                        subscription.id, {"Configuration": jsonrpc.to_json(kept)}
                    )
                    connection.send_later(message)


class Connection:
    """One open socket: reads messages, runs each in its own task, answers by id."""

    def __init__(self, hub: WebSocketHub, request: web.BaseRequest, ws: web.WebSocketResponse):
        self.hub = hub
        self.server = hub.server
        self.device = hub.server.device
        self.request = request
        self.ws = ws
        self.subscriptions: dict[int, Subscription] = {}
        self._next_subscription = 1
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_started = asyncio.Event()
        self._last_started.set()

    async def serve(self) -> None:
        try:
            async for message in self.ws:
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    self._spawn(self._message(message.data))
                elif message.type == WSMsgType.ERROR:
                    break
        finally:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        try:
            await asyncio.wait_for(
                self.ws.close(code=WSCloseCode.GOING_AWAY, message=b"Device going away"),
                CLOSE_TIMEOUT,
            )
        except (TimeoutError, ConnectionError):
            self.abort()

    def abort(self) -> None:
        if self.request.transport is not None:
            self.request.transport.abort()

    def _spawn(self, coroutine: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def send_later(self, text: str) -> None:
        self._spawn(self._send(text))

    async def _send(self, text: str) -> None:
        if self.ws.closed:
            return
        if self.device.faults.garbage:
            text = GARBAGE_TEXT
        if self.device.faults.truncate:
            await self._send_truncated(text)
            return
        with contextlib.suppress(ConnectionError):
            await self.ws.send_str(text)

    async def _send_truncated(self, text: str) -> None:
        """The `truncate` fault: a text frame whose header announces the whole message,
        half of it, then the connection is aborted."""
        transport = self.request.transport
        if transport is None or transport.is_closing():
            return
        payload = text.encode("utf-8")
        size = len(payload)
        if size < 126:
            header = bytes((0x81, size))
        elif size < 1 << 16:
            header = bytes((0x81, 126)) + size.to_bytes(2, "big")
        else:
            header = bytes((0x81, 127)) + size.to_bytes(8, "big")
        transport.write(header + payload[: size // 2])
        for _ in range(200):  # let the half frame reach the socket before the abort
            if transport.is_closing() or not transport.get_write_buffer_size():
                break
            await asyncio.sleep(0.005)
        transport.abort()

    async def _message(self, data: str | bytes) -> None:
        previous, started = self._last_started, asyncio.Event()
        self._last_started = started
        try:
            await self._process(data, previous, started)
        finally:
            started.set()

    async def _process(
        self, data: str | bytes, previous: asyncio.Event, started: asyncio.Event
    ) -> None:
        faults = self.device.faults
        if faults.drop or faults.offline:
            self.abort()
            return
        last = faults.take_last_request()
        try:
            await self._process_one(data, previous, started)
        finally:
            if last:  # answered: now the device goes away (offline_after)
                self.server.go_offline_soon()

    async def _process_one(
        self, data: str | bytes, previous: asyncio.Event, started: asyncio.Event
    ) -> None:
        faults = self.device.faults
        parsed: jsonrpc.Request | RpcError
        try:
            parsed = jsonrpc.parse_request(data)
        except RpcError as exc:
            parsed = exc  # answered with this error, after the rate limit and latency
        try:
            await self.server.session_limiter.acquire()
        except QueueFull:
            if isinstance(parsed, RpcError) or not parsed.notification:
                request_id = parsed.request_id if isinstance(parsed, RpcError) else parsed.id
                busy = RpcError(jsonrpc.INTERNAL_ERROR, TOO_MANY_REQUESTS)
                await self._send(jsonrpc.error_message(request_id, busy))
            return
        delay = self.server.settings.request_delay + faults.latency
        if delay > 0:
            await asyncio.sleep(delay)
        if isinstance(parsed, RpcError):
            await self._send(jsonrpc.error_message(parsed.request_id, parsed))
            return
        request = parsed
        await previous.wait()
        started.set()
        # Nothing below awaits before the command has run (or, for a coroutine handler,
        # started): that is what keeps commands in arrival order.
        context = CommandContext(self.device, via="jsonrpc")
        followups: list[str] = []
        try:
            result = await self._dispatch(request, context, followups)
            answer = jsonrpc.result_message(request.id, result)
        except RpcError as exc:
            answer = jsonrpc.error_message(request.id, exc)
        except Exception:
            log.exception("%s: %s failed", self.device.name, request.method)
            answer = jsonrpc.error_message(
                request.id, RpcError(jsonrpc.INTERNAL_ERROR, "Internal error")
            )
        if not request.notification:
            await self._send(answer)
        for text in followups:
            await self._send(text)
        if context.boot_action is not None:
            self.server.boot(context.boot_action)

    # ------------------------------------------------------------------ methods

    async def _dispatch(
        self, request: jsonrpc.Request, context: CommandContext, followups: list[str]
    ) -> Any:
        method, params = request.method, request.params
        if method == "xGet":
            return self._get(params)
        if method == "xQuery":
            steps = jsonrpc.parse_steps(params.get("Query"), "Query", wildcards=True)
            return self._query(steps, jsonrpc.TOPS)
        if method == "xSet":
            return self._set(params)
        if method == "xFeedback/Subscribe":
            return self._subscribe(params, followups)
        if method == "xFeedback/Unsubscribe":
            return self._unsubscribe(params)
        path = jsonrpc.command_path(method)
        if path is not None:
            given, body = jsonrpc.logged_params(params)
            self.device.requests.command("jsonrpc", path, given, body)
        spec = self.server.registry.for_device(path, self.device) if path is not None else None
        if spec is None:  # unknown, or the device's release or product lacks it
            raise RpcError(jsonrpc.METHOD_NOT_FOUND, "Method not found")
        try:
            args = jsonrpc.command_args(spec, params)
        except ParameterError as exc:
            raise RpcError(jsonrpc.INVALID_PARAMS, str(exc)) from exc
        result = await run_command(spec, context, args)
        error = jsonrpc.command_error(result)
        if error is not None:
            raise error
        return jsonrpc.command_result(result)

    def _get(self, params: Mapping[str, Any]) -> Any:
        steps = jsonrpc.parse_steps(params.get("Path"), "Path")
        top = jsonrpc.top_name(steps[0])
        if top is None:
            raise jsonrpc.no_match()
        return jsonrpc.get_value(self.device.getxml(top), steps[1:])

    def _query(self, steps: list[Step], allowed: tuple[str, ...]) -> dict[str, Any]:
        tops = jsonrpc.wanted_tops(steps, allowed)
        return jsonrpc.query((self.device.getxml(top) for top in tops), steps)

    def _set(self, params: Mapping[str, Any]) -> bool:
        steps = jsonrpc.parse_steps(params.get("Path"), "Path")
        if "Value" not in params:
            raise RpcError(jsonrpc.INVALID_PARAMS, "Missing parameter: Value")
        raw = params["Value"]
        if steps and steps[0].name.lower() == "configuration":
            self.device.requests.configuration(
                "jsonrpc", "/".join(f"{s.name}[{s.index}]" if s.index is not None else s.name
                                    for s in steps[1:]),
                json.dumps(raw) if not isinstance(raw, str | int) or isinstance(raw, bool)
                else str(raw))
        key, value = jsonrpc.config_setting(steps, raw)
        node = self.device.configuration_node(key)
        if node is None:  # the release or product lacks it
            raise jsonrpc.no_match()
        if accepts(key, value, self.device.configuration_node) is None:
            raise RpcError(jsonrpc.COMMAND_ERROR, jsonrpc.ILLEGAL_VALUE,
                           {"Cause": jsonrpc.CAUSE_ILLEGAL_VALUE, "Reason": jsonrpc.ILLEGAL_VALUE})
        config = self.device.config
        if config.get(key) != value:
            before = dict(config)
            config[key] = value
            self.device.save()
            self.hub.configuration_changed(before)
        return True

    def _subscribe(self, params: Mapping[str, Any], followups: list[str]) -> dict[str, int]:
        steps = jsonrpc.parse_steps(params.get("Query"), "Query", wildcards=True)
        current = params.get("NotifyCurrentValue", False)
        if not isinstance(current, bool):
            raise RpcError(jsonrpc.INVALID_PARAMS, "NotifyCurrentValue must be true or false")
        jsonrpc.wanted_tops(steps, jsonrpc.FEEDBACK_TOPS)  # validates the first step
        if self.hub.subscription_count >= MAX_SUBSCRIPTIONS:
            raise RpcError(jsonrpc.SUBSCRIPTION_LIMIT, "Global subscription count exceeded")
        subscription = Subscription(self._next_subscription, steps)
        self._next_subscription += 1
        self.subscriptions[subscription.id] = subscription
        if current:
            tree = self._query(steps, jsonrpc.FEEDBACK_TOPS)
            if tree:
                followups.append(jsonrpc.event_message(subscription.id, tree))
        return {"Id": subscription.id}

    def _unsubscribe(self, params: Mapping[str, Any]) -> bool:
        subscription_id = params.get("Id")
        if isinstance(subscription_id, bool) or not isinstance(subscription_id, int):
            raise RpcError(jsonrpc.INVALID_PARAMS, "Id must be a subscription id (a number)")
        if self.subscriptions.pop(subscription_id, None) is None:
            raise RpcError(jsonrpc.INVALID_PARAMS, f"No subscription with Id {subscription_id}")
        return True
