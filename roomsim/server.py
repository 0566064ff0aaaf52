"""The HTTPS web server of one simulated device (aiohttp: one AppRunner + one TCPSite):
authentication (Basic or session cookie), login lockout, session caps, rate limits,
faults, getxml/putxml, the WebSocket JSON-RPC API (`GET /ws`, roomsim/websocket.py), and
reboots that really take the listener away (closing open WebSockets).

Faults act in this order on every request: drop / offline / rebooting (no answer), the
`offline_after` count, latency, a `storm_503` answer, `http_status`, then the endpoint;
`garbage` and `hostile_xml` replace getxml/putxml bodies, and `truncate` cuts whatever
reply has a body (roomsim/faults.py describes each)."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
import socket
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus

from aiohttp import BasicAuth, HttpVersion11, hdrs, web

from .commands import CommandContext, CommandRegistry, execute
from .configuration import apply_document, settings_of
from .device import SimDevice
from .limits import LoginGuard, QueueFull, RateLimiter, SessionLimitError, SessionTable
from .websocket import WS_PATH, WebSocketHub
from .xml_wire import (
    NO_ACTION,
    XML_CONTENT_TYPE,
    WireError,
    XmlSyntaxError,
    action_error,
    parse_document,
    serialize,
)

log = logging.getLogger(__name__)

ADMIN_USER = "admin"
SESSION_COOKIE = "SessionId"
GARBAGE_BODY = b"<<<%%%garbage\x00\xff not xml %%%>>>"
STORM_RETRY_AFTER = "1"
UNAUTHORIZED_BODY = (
    "401 Unauthorized\n\nThis server could not verify that you are authorized to access the "
    "document you requested. Either you supplied the wrong credentials (e.g., bad password), "
    "or your browser does not understand how to supply the credentials required.\n\n   "
)
# The one route a device's web server had: any path, any method (a fullmatch, as aiohttp's
# "/{path:.*}" route: a path without "/" first or with a newline matches nothing).
_ANY_PATH = re.compile(r"/.*")
# Handlers get the request and the authenticated user.
_Handler = Callable[[web.BaseRequest, str], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class ServerSettings:
    """Web server limits; the defaults are a real device's."""

    basic_rate: float = 1.0
    basic_queue: int = 30
    session_rate: float = 15.0
    session_queue: int = 90
    max_failed_logins: int = 5
    lockout_seconds: float = 300.0
    max_sessions_per_user: int = 20
    max_sessions_total: int = 30
    reboot_seconds: float = 5.0
    request_delay: float = 0.0


def _bound_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port), not listening yet (SO_REUSEADDR, as asyncio's
    servers use, so the device's own closed connections do not block it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


async def _expect(request: web.BaseRequest) -> None:
    """aiohttp's answer to an Expect header: `100 Continue` for HTTP/1.1 and "100-continue",
    417 for any other expectation (HTTP/1.0: nothing)."""
    expect = request.headers.get(hdrs.EXPECT, "")
    if request.version == HttpVersion11:
        if expect.lower() == "100-continue":
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0  # the interim answer is no part of the reply
        else:
            raise web.HTTPExpectationFailed(text=f"Unknown Expect: {expect}")


def _text(status: int, text: str, **headers: str) -> web.Response:
    return web.Response(
        status=status, text=text, headers={"Content-Type": "text/plain; charset=UTF-8", **headers}
    )


def _xml(root: ET.Element) -> web.Response:
    return web.Response(body=serialize(root), headers={"Content-Type": XML_CONTENT_TYPE})


def hostile_document(kind: str, root_tag: str) -> bytes:
    """The `hostile_xml` fault's reply: `laughs`, ten levels of nested entities (a billion
    `lol`s once expanded), or `external`, an entity naming file:///etc/passwd. A safe parser
    refuses both; neither is ever expanded by roomsim."""
    tag = root_tag if root_tag.isalnum() else "Status"
    if kind == "external":
        dtd = '<!ENTITY x SYSTEM "file:///etc/passwd">'
        body = "&x;"
    else:
        levels = ['<!ENTITY lol0 "lol">']
        levels += [
            f'<!ENTITY lol{i} "{"".join(f"&lol{i - 1};" for _ in range(10))}">'
            for i in range(1, 10)
        ]
        dtd = "\n ".join(levels)
        body = "&lol9;"
    text = (
        '<?xml version="1.0"?>\n'
        f"<!DOCTYPE {tag} [\n {dtd}\n]>\n"
        f"<{tag} product=\"Cisco Codec\" apiVersion=\"4\">{body}</{tag}>\n"
    )
    return text.encode("ascii")


class DeviceServer:
    """Serves one device on 127.0.0.1:`device.port`. `start`/`stop` say whether the fleet
    wants it up; the listener is open only while wanted, not offline and not rebooting."""

    def __init__(
        self, device: SimDevice, settings: ServerSettings, registry: CommandRegistry
    ) -> None:
        self.device = device
        self.settings = settings
        self.registry = registry
        self.sessions = SessionTable(settings.max_sessions_per_user, settings.max_sessions_total)
        self.logins = LoginGuard(settings.max_failed_logins, settings.lockout_seconds)
        self.basic_limiter = RateLimiter(settings.basic_rate, settings.basic_queue)
        self.session_limiter = RateLimiter(settings.session_rate, settings.session_queue)
        self.websockets = WebSocketHub(self)
        self._runner: web.AppRunner | None = None
        self._lock = asyncio.Lock()
        self._wanted = False
        self._rebooting = False
        self._boot_task: asyncio.Task[None] | None = None
        self._offline_task: asyncio.Task[None] | None = None
        self._reservation: socket.socket | None = None  # holds the port while down
        self._routes: dict[tuple[str, str], _Handler] = {
            ("POST", "/xmlapi/session/begin"): self._session_begin,
            ("POST", "/xmlapi/session/end"): self._session_end,
            ("GET", "/getxml"): self._getxml,
            ("POST", "/putxml"): self._putxml,
            ("GET", "/status.xml"): self._whole_document,
            ("GET", "/configuration.xml"): self._whole_document,
        }

    # ------------------------------------------------------------------ power

    async def start(self) -> None:
        self._wanted = True
        await self.sync()

    async def stop(self) -> None:
        self._wanted = False
        if self._boot_task is not None:
            self._boot_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._boot_task
            self._boot_task = None
        await self.sync()

    async def sync(self) -> None:
        """Open or close the listener to match the wanted, offline and rebooting states.

        While the device is down but wanted (offline, rebooting) its port stays reserved
        by a bound socket that does not listen: connections are refused, as from a device
        that is off, and nothing else on the machine (an outgoing connection's source port,
        another process binding port 0) can take the port, so the device comes back where
        the inventory says it is."""
        async with self._lock:
            up = self._wanted and not self._rebooting and not self.device.faults.offline
            if up and self._runner is None:
                await self._listen()
            elif not up and self._runner is not None:
                runner, self._runner = self._runner, None
                for site in list(runner.sites):
                    await site.stop()  # the listening socket is closed now...
                if self._wanted:
                    self._reserve_port()  # ...and its port taken back at once
                await self.websockets.close_all()
                await runner.cleanup()
            if not self._wanted:
                self._release_port()

    def _reserve_port(self) -> None:
        self._release_port()
        try:
            self._reservation = _bound_socket(self.device.host, self.device.port)
        except OSError as exc:  # lost it already: the device will come back elsewhere
            log.warning("%s: cannot keep port %d while down (%s)", self.device.name,
                        self.device.port, exc)

    def _release_port(self) -> None:
        reservation, self._reservation = self._reservation, None
        if reservation is not None:
            reservation.close()

    async def _listen(self) -> None:
        server = web.Server(self._serve, access_log=None)
        runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=0.25)
        await runner.setup()
        context = self.device.tls.listening_context()
        host, port = self.device.host, self.device.port
        sock, self._reservation = self._reservation, None
        try:
            if sock is None:
                try:
                    sock = _bound_socket(host, port)
                except OSError as exc:
                    if port == 0:
                        raise
                    log.warning("%s: port %d unavailable (%s); using a new port",
                                self.device.name, port, exc)
                    sock = _bound_socket(host, 0)
            await web.SockSite(runner, sock, ssl_context=context).start()
        except BaseException:
            if sock is not None:
                sock.close()
            await runner.cleanup()
            raise
        port = int(runner.addresses[0][1])
        if port != self.device.port:
            self.device.port = port
            self.device.save()
        self._runner = runner

    def boot(self, action: str) -> asyncio.Task[None]:
        """Take the device down now; "Restart" brings it back after `reboot_seconds`,
        "Shutdown" leaves it off (the `offline` fault) until that fault is cleared."""
        if self._boot_task is not None and not self._boot_task.done():
            return self._boot_task
        self._boot_task = asyncio.get_running_loop().create_task(self._reboot(action))
        return self._boot_task

    async def _reboot(self, action: str) -> None:
        self._rebooting = True
        try:
            await self.sync()
            self.sessions.clear()
            if action == "Shutdown":
                self.device.faults.offline = True
            await asyncio.sleep(self.device.faults.slow_reboot or self.settings.reboot_seconds)
        finally:
            self._rebooting = False
        self.device.mark_booted()
        await self.sync()

    # ------------------------------------------------------------------ request pipeline

    async def _serve(self, request: web.BaseRequest) -> web.StreamResponse:
        """aiohttp's low-level server calls this: what its Application with the one route
        `/{path:.*}` did around `_handle` (the route's match, then an Expect header), done
        here without the router and the match objects it built per request (about a
        twentieth of roomsim's CPU per request)."""
        found = _ANY_PATH.fullmatch(request.rel_url.path_safe) is not None
        if request.headers.get(hdrs.EXPECT):
            await _expect(request)
            await request.writer.drain()
        if not found:
            raise web.HTTPNotFound()  # aiohttp's answer when no route matched
        return await self._handle(request)

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """Faults, then authentication, then the rate limit of the auth class, then the
        endpoint; then the faults that spoil the reply (truncate) or follow it
        (offline_after)."""
        self.device.requests_seen += 1
        faults = self.device.faults
        if faults.drop or faults.offline or self._rebooting:
            return self._drop(request)
        last = faults.take_last_request()
        websocket = request.method == "GET" and request.path == WS_PATH
        if last and websocket:
            self.go_offline_soon()  # the socket is served until the device goes away
        response = await self._answer(request)
        if last and not websocket:
            self.go_offline_soon()
        if isinstance(response, web.WebSocketResponse) or response.prepared:
            return response
        if last:
            response.force_close()  # `Connection: close`: the device is going away
        if faults.truncate and isinstance(response, web.Response) and response.body:
            return await self._truncated(request, response)
        return response

    async def _answer(self, request: web.BaseRequest) -> web.StreamResponse:
        faults = self.device.faults
        delay = self.settings.request_delay + faults.latency
        if delay > 0:
            await asyncio.sleep(delay)
        if faults.take_storm():
            return _text(503, "503 Service Temporarily Unavailable\n",
                         **{"Retry-After": STORM_RETRY_AFTER})
        if faults.http_status is not None:
            return self._status_fault(faults.http_status)
        if request.method == "GET" and request.path == WS_PATH:
            return await self.websockets.handshake(request)
        if faults.no_sessions and request.path.startswith("/xmlapi/session/"):
            return _text(404, "404 Not Found\n")
        user, limiter, refusal = self._authenticate(request)
        if refusal is not None:
            return refusal
        try:
            await limiter.acquire()
        except QueueFull:
            return _text(503, "503 Service Temporarily Unavailable\n")
        handler = self._routes.get((request.method, request.path))
        if handler is None:
            return _text(404, "404 Not Found\n")
        return await handler(request, user)

    def go_offline_soon(self) -> None:
        """`offline_after` ran out (faults.offline is already set): close the listener once
        the reply in hand is on its way. Requests meanwhile are dropped as offline."""
        if self._offline_task is None or self._offline_task.done():
            self._offline_task = asyncio.get_running_loop().create_task(self.sync())

    @staticmethod
    async def _truncated(request: web.BaseRequest, response: web.Response) -> web.StreamResponse:
        """The `truncate` fault: the full Content-Length, half the body, then an abort."""
        body = response.body
        assert isinstance(body, bytes | bytearray)
        cut = web.StreamResponse(status=response.status, reason=response.reason,
                                 headers=response.headers)
        cut.content_length = len(body)
        await cut.prepare(request)
        await cut.write(bytes(body[: len(body) // 2]))
        transport = request.transport
        if transport is not None:
            for _ in range(200):  # let the half body reach the socket before the abort
                if transport.is_closing() or not transport.get_write_buffer_size():
                    break
                await asyncio.sleep(0.005)
            transport.abort()
        return cut  # write_eof fails quietly on the aborted connection

    @staticmethod
    def _drop(request: web.BaseRequest) -> web.StreamResponse:
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=500)  # never sent: the connection is gone

    @staticmethod
    def _status_fault(status: int) -> web.Response:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Error"
        return _text(status, f"{status} {reason}\n")

    def _authenticate(
        self, request: web.BaseRequest
    ) -> tuple[str, RateLimiter, web.Response | None]:
        """(user, rate limiter of its class, refusal). A valid session cookie wins; else
        Basic credentials, counted by the lockout guard."""
        session_id = request.cookies.get(SESSION_COOKIE)
        if session_id:
            user = self.sessions.user(session_id)
            if user is not None:
                return user, self.session_limiter, None
        header = request.headers.get(hdrs.AUTHORIZATION)
        if not header:
            return "", self.basic_limiter, self._unauthorized()
        try:
            credentials = BasicAuth.decode(header, encoding="utf-8")
        except ValueError:
            return "", self.basic_limiter, self._unauthorized()
        user = credentials.login
        if not self.login(user, credentials.password):
            return user, self.basic_limiter, self._unauthorized()
        return user, self.basic_limiter, None

    def login(self, user: str, password: str) -> bool:
        """Check Basic credentials (HTTP and WebSocket alike): a locked-out user is refused
        even with the right password; refusals count toward `device.failed_logins`, wrong
        passwords toward the lockout."""
        if self.logins.locked(user):
            self.device.failed_logins += 1
            return False
        good = user == ADMIN_USER and hmac.compare_digest(
            password.encode("utf-8"), self.device.password.encode("utf-8")
        )
        if not good:
            self.logins.failed(user)
            self.device.failed_logins += 1
            return False
        self.logins.succeeded(user)
        return True

    @staticmethod
    def _unauthorized() -> web.Response:
        return _text(401, UNAUTHORIZED_BODY, **{"WWW-Authenticate": 'Basic realm="CISCO-Endpoint"'})

    # ------------------------------------------------------------------ handlers

    async def _session_begin(self, request: web.BaseRequest, user: str) -> web.StreamResponse:
        try:
            session_id = self.sessions.open(user)
        except SessionLimitError as exc:
            return _text(503, f"{exc}\n")
        response = web.Response(status=204)
        response.headers["Set-Cookie"] = f"{SESSION_COOKIE}={session_id}; Path=/; HttpOnly; Secure"
        return response

    async def _session_end(self, request: web.BaseRequest, user: str) -> web.StreamResponse:
        session_id = request.cookies.get(SESSION_COOKIE)
        if session_id:
            self.sessions.close(session_id)
        return web.Response(status=204)

    async def _getxml(self, request: web.BaseRequest, user: str) -> web.StreamResponse:
        return self._reply(self.device.getxml(request.query.get("location", "")))

    async def _whole_document(self, request: web.BaseRequest, user: str) -> web.StreamResponse:
        top = "Configuration" if request.path == "/configuration.xml" else "Status"
        return self._reply(self.device.getxml(top))

    async def _putxml(self, request: web.BaseRequest, user: str) -> web.StreamResponse:
        try:
            body = await request.read()
        except ConnectionResetError:  # the client gave up (its timeout) before sending it all
            return self._drop(request)
        if self.device.faults.action_error:
            return self._reply(action_error(NO_ACTION))
        try:
            document = parse_document(body)
        except XmlSyntaxError as exc:
            return _text(400, f"XML syntax error: {exc}\n")
        except WireError as exc:
            return self._reply(action_error(str(exc)))
        context = CommandContext(self.device)
        if document.tag == "Command":
            reply = await execute(self.registry, context, document)
        elif document.tag == "Configuration":
            before = dict(self.device.config)
            for key, value in settings_of(document):
                self.device.requests.configuration("putxml", key, value)
            reply, changed = apply_document(
                self.device.config, document, self.device.configuration_node)
            if changed:
                self.device.save()
                self.websockets.configuration_changed(before)
        else:
            reply = action_error(NO_ACTION)
        response = self._reply(reply)
        if context.boot_action is None:
            return response
        await response.prepare(request)
        await response.write_eof()
        self.boot(context.boot_action)
        return response

    def _reply(self, root: ET.Element) -> web.Response:
        faults = self.device.faults
        if faults.garbage:
            return web.Response(body=GARBAGE_BODY, headers={"Content-Type": XML_CONTENT_TYPE})
        if faults.hostile_xml is not None:
            return web.Response(body=hostile_document(faults.hostile_xml, root.tag),
                                headers={"Content-Type": XML_CONTENT_TYPE})
        return _xml(root)
