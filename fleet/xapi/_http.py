"""fleet.xapi._http — the HTTP requests the local transport makes, behind one small interface.

:class:`HttpClient` is all :class:`~fleet.xapi.local.LocalTransport` needs: send one request,
get the whole reply back as an :class:`HttpReply`, or an :class:`HttpFailure` that says
whether the request may have reached the device (``sent``) — the retry rules hang on that.

:class:`StreamClient` is what runs against devices: HTTP/1.1 framed by h11 on asyncio
streams, one keep-alive TLS connection per device. :func:`failure_error` says what an
:class:`HttpFailure` is in certfleet's error tree, for every transport that meets one.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar
from urllib.parse import urlencode, urlsplit

import h11

from ..errors import (
    BadReplyError,
    DeviceError,
    TimeoutError_,
    TlsVerifyError,
    TransportError,
    UnreachableError,
)
from ..secrets import redact
from ._config import USER_AGENT, is_ip_literal

__all__ = [
    "ConnectFailed",
    "ConnectTimedOut",
    "ConnectionBroke",
    "HttpClient",
    "HttpFailure",
    "HttpReply",
    "MalformedReply",
    "ReplyTimedOut",
    "StreamClient",
    "TlsRejected",
    "failure_error",
    "open_tls",
]


@dataclass(frozen=True, slots=True)
class HttpReply:
    """A whole reply: status, headers (names lower-case), cookies set, body."""

    status: int
    headers: Mapping[str, str]
    cookies: Mapping[str, str]
    body: bytes


class HttpFailure(Exception):
    """No reply. ``sent`` is False only when the request certainly did not reach the device
    (the connection was never made), so even a write may be sent again."""

    sent = True

    def __init__(self, message: str) -> None:
        # what ssl/httpx say can quote the request (an Authorization header): mask secrets
        message = redact(message)
        super().__init__(message)
        self.message = message


class ConnectFailed(HttpFailure):
    sent = False


class ConnectTimedOut(ConnectFailed):
    pass


class TlsRejected(ConnectFailed):
    """The device's certificate did not verify (``pinned``: it is not the pinned one)."""

    def __init__(self, message: str, *, pinned: bool = False) -> None:
        super().__init__(message)
        self.pinned = pinned


class ReplyTimedOut(HttpFailure):
    pass


class ConnectionBroke(HttpFailure):
    pass


class MalformedReply(ConnectionBroke):
    """The device answered, but its status line or header block is not valid HTTP/1.1
    (RFC 9112): refused, and the connection with it."""


class HttpClient(Protocol):
    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None = None,
        query: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> HttpReply:
        """Send one request; ``timeout`` (seconds) replaces the read timeout for this one."""
        ...

    async def aclose(self) -> None: ...


#: the largest reply accepted from a device (a certificate list is a few hundred KiB at most)
MAX_REPLY_BYTES = 16 * 1024 * 1024
#: the largest status line + header block accepted
MAX_HEAD_BYTES = 64 * 1024
#: a body larger than this is written a piece this size at a time, under flow control
_CHUNK = 256 * 1024

_P = TypeVar("_P", bound=asyncio.BaseProtocol)


async def open_tls(
    host: str, port: int, ctx: ssl.SSLContext, *, timeout: float, pin_sha256: str | None = None,
    peer_der: bool = True,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes | None]:
    """A TLS connection verified by ``ctx`` (hostname included when it checks hostnames) or,
    with ``pin_sha256``, by the certificate's SHA-256 — checked before anything is sent.
    Returns the streams and the DER of the certificate presented (None with ``peer_der``
    False and no pin: copying it out costs every connection, and a client rarely wants it).
    Raises
    :class:`TlsRejected`, :class:`ConnectTimedOut` or :class:`ConnectFailed`."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(loop=loop)  # what asyncio.open_connection builds
    transport, protocol, der = await _connect(
        lambda: asyncio.StreamReaderProtocol(reader, loop=loop), host, port, ctx,
        timeout=timeout, pin_sha256=pin_sha256, peer_der=peer_der,
    )
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop), der


async def _connect(
    factory: Callable[[], _P], host: str, port: int, ctx: ssl.SSLContext, *, timeout: float,
    pin_sha256: str | None, peer_der: bool,
) -> tuple[asyncio.Transport, _P, bytes | None]:
    """:func:`open_tls` with the protocol ``factory`` makes; for :class:`StreamClient`
    (its own protocol) and the stream callers alike, so both map errors the same way."""
    try:
        async with asyncio.timeout(timeout):
            transport, protocol = await asyncio.get_running_loop().create_connection(
                # SNI names the device in every verify mode (a device serving several names
                # picks its certificate by it); an IP literal is never sent as SNI, but is
                # what a hostname check matches the certificate against
                factory, host, port, ssl=ctx,
                server_hostname=host if ctx.check_hostname or not is_ip_literal(host) else "",
            )
    except ssl.SSLCertVerificationError as exc:
        raise TlsRejected(f"certificate verify failed: {exc.verify_message or exc}") from None
    except TimeoutError:
        raise ConnectTimedOut("connection timed out") from None
    except (OSError, ssl.SSLError) as exc:
        raise ConnectFailed(str(exc) or type(exc).__name__) from None
    if pin_sha256 is None and not peer_der:
        return transport, protocol, None
    ssl_object = transport.get_extra_info("ssl_object")
    der: bytes | None = ssl_object.getpeercert(binary_form=True) if ssl_object else None
    if pin_sha256 is not None:
        seen = hashlib.sha256(der).hexdigest() if der else "no certificate"
        if seen != pin_sha256:
            transport.close()
            raise TlsRejected(
                f"certificate SHA-256 {seen} does not match the pinned {pin_sha256}",
                pinned=True,
            )
    return transport, protocol, der


def failure_error(exc: HttpFailure, *, where: str, trust: str, setting: str) -> DeviceError:
    """What an HTTP failure talking to ``where`` is in certfleet's error tree. ``trust`` is
    what the certificate was checked against, ``setting`` the inventory key that sets it."""
    if isinstance(exc, TlsRejected):
        if exc.pinned:
            return TlsVerifyError(f"TLS pin check failed for {where}: {exc.message}")
        return TlsVerifyError(
            f"TLS certificate of {where} did not verify against {trust}: {exc.message}; fix "
            f"{setting} rather than turning checks off"
        )
    if isinstance(exc, ConnectTimedOut):
        return UnreachableError(f"connection to {where} timed out")
    if not exc.sent:
        return UnreachableError(f"cannot connect to {where}: {exc.message}")
    if isinstance(exc, ReplyTimedOut):
        return TimeoutError_(f"{exc.message} from {where}")
    if isinstance(exc, MalformedReply):
        return BadReplyError(f"{where} sent a malformed reply: {exc.message}")
    return TransportError(f"connection to {where} broke: {exc.message}")


class StreamClient:
    """One device's HTTP/1.1 client: one keep-alive TLS connection, requests one at a time
    (a device's calls are sequential). h11 does the framing (RFC 9112: Content-Length,
    chunked with trailers, replies delimited by the connection's end, obs-fold, interim 1xx
    replies); :class:`_Link`, an asyncio protocol, feeds it the bytes as they come.

    Why not httpx or aiohttp: a fleet run is thousands of short requests, and on this path
    aiohttp cost a quarter more client CPU per device than the same exchange on bare streams
    (bench/fleet_bench.py, rows ``status`` and ``floor``), and its import a tenth of a second
    of every run; nor asyncio streams any more: their reader, writer, drain and read calls were
    a fifth of the client's CPU per device, for bytes that go straight into h11 anyway.
    TLS is verified by ``ssl_context`` (hostname included), or, with
    ``pin_sha256`` (the context then does not verify), by comparing the certificate's SHA-256
    right after the handshake — before a byte of HTTP, so credentials never reach a device
    that is not the pinned one. No cookie jar, no proxies, no redirects followed."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        *,
        connect_timeout: float,
        read_timeout: float,
        pin_sha256: str | None = None,
    ) -> None:
        self._ctx = ssl_context
        self._pin = pin_sha256
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._link: _Link | None = None
        self._origin: tuple[str, int] | None = None
        #: the last URL's "https://netloc" and its host, port and Host header: one device's
        #: URLs share them, so only the path of the next one needs reading
        self._prefix = ""
        self._where: tuple[str, int, str] = ("", 0, "")

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None = None,
        query: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> HttpReply:
        prefix = self._prefix
        path = url[len(prefix):] if prefix and url.startswith(prefix) else ""
        if path[:1] == "/" and not _SPECIAL.intersection(path):
            host, port, host_header = self._where
        else:
            host, port, host_header, path = _split(url)
            self._prefix = url[:len(url) - len(path)] if url.endswith(path) and path else ""
            self._where = (host, port, host_header)
        if self._origin is not None and self._origin != (host, port):
            await self.aclose()  # one client, one device: a new origin gets a new connection
        request = _request(method, host_header, path, headers, body, query)
        link = self._link
        if link is not None and not (link.usable and link.h11.our_state is h11.IDLE):
            # the device closed the idle connection, or a request on it was cancelled
            # half-way (its late reply must not be read as the next one's)
            await self.aclose()
            link = None
        if link is None:
            _, link, _ = await _connect(_Link, host, port, self._ctx, pin_sha256=self._pin,
                                        timeout=self._connect_timeout, peer_der=False)
            self._link = link
            self._origin = (host, port)
        connection = link.h11
        limit = timeout or self._read_timeout
        reply = link.expect(limit)
        try:
            message = connection.send(request)
            if body and len(body) > _CHUNK:
                await link.write_body(message, body)
            else:
                if body:
                    message += connection.send(h11.Data(data=body))
                link.write(message + connection.send(_END))
            result = await reply
        except HttpFailure:
            await self.aclose()
            raise
        if not link.usable:  # delimited by the connection's end, or Connection: close
            await self.aclose()
        return result

    async def aclose(self) -> None:
        link, self._link, self._origin = self._link, None, None
        if link is not None:
            await link.close()


class _Link(asyncio.Protocol):
    """One TLS connection of a :class:`StreamClient`: what arrives goes straight into its
    h11 connection, and the request waiting gets its whole reply (interim 1xx replies
    skipped, sizes capped) or an :class:`HttpFailure`. Bytes that come while no request
    waits (a late reply to a cancelled one, anything after a reply's end) are never taken
    for the next request's reply: the connection is dropped."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_BYTES)
        self.transport: asyncio.Transport | None = None
        #: False once the device closed or broke the connection or sent bytes unasked
        self.usable = True
        self.paused = False  # writing paused by the transport (flow control)
        self._lost = False
        self._closed: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._reply: asyncio.Future[HttpReply] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = self._limit = 0.0
        # the reply being read
        self._response: h11.Response | None = None
        self._head: list[bytes] = []  # what came before the reply's head was parsed
        self._parts: list[bytes | bytearray] = []
        self._total = 0

    # ------------------------------------------------------------ the request's side

    def expect(self, limit: float) -> asyncio.Future[HttpReply]:
        """The future the next reply goes to, failed after ``limit`` seconds (at once if
        the connection is over)."""
        self._limit = limit
        deadline = self._deadline = self.loop.time() + limit
        timer = self._timer
        if timer is None or timer.when() > deadline:
            # one timer per connection, moved on only when it goes off early: a timer made
            # and cancelled per request, left in the loop's heap until its time, cost more
            if timer is not None:
                timer.cancel()
            self._timer = self.loop.call_at(deadline, self._expire)
        reply = self._reply = self.loop.create_future()
        self._response, self._head, self._parts, self._total = None, [], [], 0
        if not self.usable:  # the device closed it right after the handshake
            reply.set_exception(ConnectionBroke("the device closed the connection without a reply"))
        return reply

    def write(self, data: bytes) -> None:
        if self.usable and self.transport is not None:
            self.transport.write(data)

    async def write_body(self, head: bytes, body: bytes) -> None:
        """A request with a large body, a piece at a time while the transport takes more;
        stops early when the reply came (or the request failed) before the body's end."""
        connection, reply = self.h11, self._reply
        self.write(head)
        for start in range(0, len(body), _CHUNK):
            if reply is None or reply.done():
                return
            self.write(connection.send(h11.Data(data=body[start:start + _CHUNK])))
            if self.paused:
                drain = self._drain = self.loop.create_future()
                await drain
        self.write(connection.send(_END))

    def _expire(self) -> None:
        self._timer = None
        reply = self._reply
        if reply is None or reply.done():
            return  # no request waits: the next one sets the timer again
        if self._deadline - self.loop.time() > 0.001:  # a later request's deadline
            self._timer = self.loop.call_at(self._deadline, self._expire)
            return
        self._fail(ReplyTimedOut(f"no reply within {self._limit:g}s"))

    async def close(self) -> None:
        """Close, and wait (a second at most) for the connection's end."""
        self.usable = False
        if self._timer is not None:
            self._timer.cancel()
        if self._lost or self.transport is None:
            return
        closed = self._closed = self.loop.create_future()
        self.transport.close()
        timer = self.loop.call_later(1.0, _settle, closed)
        try:
            await closed
        finally:
            timer.cancel()

    def _fail(self, exc: BaseException) -> None:
        self.usable = False
        if self._reply is not None and not self._reply.done():
            self._reply.set_exception(exc)
        self._wake()  # a body being written stops: its reply is the failure

    # ---------------------------------------------------------- the transport's side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._wake()

    def _wake(self) -> None:
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)

    def data_received(self, data: bytes) -> None:
        reply = self._reply
        if reply is None or reply.done():
            # nobody asked: never the next request's reply
            self.usable = False
            if self.transport is not None:
                self.transport.close()
            return
        if self._response is None:
            self._head.append(data)
        self.h11.receive_data(data)
        self._pump(reply)

    def eof_received(self) -> None:
        self.usable = False
        reply = self._reply
        if reply is None or reply.done():
            return
        if not self._head:
            reply.set_exception(ConnectionBroke("the device closed the connection without a reply"))
            return
        self.h11.receive_data(b"")
        self._pump(reply)
        if not reply.done():
            reply.set_exception(ConnectionBroke("the reply stopped before its end"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if exc is None:
            self.eof_received()
        self._fail(ConnectionBroke(str(exc) or type(exc).__name__) if exc is not None else
                   ConnectionBroke("the device closed the connection without a reply"))
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)

    def _pump(self, reply: asyncio.Future[HttpReply]) -> None:
        """Take h11's events until it needs more bytes, the reply is whole, or it fails."""
        connection = self.h11
        try:
            while True:
                try:
                    event = connection.next_event()
                except h11.RemoteProtocolError as exc:
                    raise _protocol_problem(exc, head_done=self._response is not None) from None
                # h11's event classes are exact (never subclassed): a type test, not
                # isinstance (ABCMeta's, a Python call per test, on every event of a reply)
                kind = type(event)
                if event is h11.NEED_DATA:
                    return
                if kind is h11.Data:
                    data = event.data  # type: ignore[union-attr]
                    self._total += len(data)
                    if self._total > MAX_REPLY_BYTES:
                        raise ConnectionBroke("reply larger than the limit refused")
                    self._parts.append(data)  # joined once, at the end: no copy per part
                elif kind is h11.Response:
                    self._response = self._checked(event)  # type: ignore[arg-type]
                elif kind is h11.EndOfMessage:
                    break
                elif kind is not h11.InformationalResponse:
                    # ConnectionClosed or PAUSED before the reply's end
                    raise ConnectionBroke("the reply stopped before its end")
            response = self._response
            assert response is not None
            result = _reply(response, b"".join(self._parts))
        except HttpFailure as exc:
            self._fail(exc)
            return
        self._reply = None
        self._parts = []
        if (connection.our_state is h11.DONE and connection.their_state is h11.DONE
                and not connection.trailing_data[0]):
            connection.start_next_cycle()  # keep-alive
        else:
            self.usable = False
        reply.set_result(result)

    def _checked(self, response: h11.Response) -> h11.Response:
        """The reply's head, refused when too large, with a bare CR or LF, or announcing a
        body over the limit."""
        received = b"".join(self._head)
        head = received[:len(received) - len(self.h11.trailing_data[0])]
        if len(head) > MAX_HEAD_BYTES:  # h11 checks only a head still incomplete
            raise MalformedReply("the reply's header is too large")
        _check_line_ends(head)
        for raw_name, raw_value in response.headers.raw_items():
            if raw_name.lower() == b"content-length" and int(raw_value) > MAX_REPLY_BYTES:
                raise ConnectionBroke(f"reply of {int(raw_value)} bytes refused")
        return response


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


#: the end of every request (an event holds no state: one serves every request)
_END = h11.EndOfMessage()


#: what urlsplit would take out of a path (query, fragment) or drop from it
_SPECIAL = frozenset("?#\t\r\n")


def _split(url: str) -> tuple[str, int, str, str]:
    """``https://host:port/path`` → host, port, the Host header's value and the path."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ConnectFailed(f"not an https URL: {url}")
    return parts.hostname, parts.port or 443, parts.netloc.rsplit("@", 1)[-1], parts.path


_USER_AGENT: tuple[bytes, bytes] = (b"User-Agent", USER_AGENT.encode("ascii"))


def _request(method: str, host: str, path: str, headers: Mapping[str, str],
             body: bytes | None, query: Mapping[str, str] | None) -> h11.Request:
    target = path or "/"
    if query:
        target += "?" + urlencode(query, safe="/")
    # headers as bytes (ASCII, as h11 would encode them): h11 takes bytes as they are
    head = [(b"Host", host.encode("ascii")), _USER_AGENT]
    if body is not None or method in ("POST", "PUT", "PATCH"):
        head.append((b"Content-Length", b"%d" % len(body or b"")))
    for name, value in headers.items():
        head.append((name.encode("ascii"), value.encode("ascii")))
    try:
        return h11.Request(method=method, target=target, headers=head)
    except h11.LocalProtocolError as exc:  # a header value with CR/LF, say: nothing is sent
        raise ConnectFailed(f"request refused before sending: {exc}") from None


def _protocol_problem(exc: h11.RemoteProtocolError, *, head_done: bool) -> ConnectionBroke:
    text = str(exc)
    if "peer closed connection" in text or "peer unexpectedly closed" in text:
        return ConnectionBroke(f"the reply stopped before its end ({text})")
    if head_done:
        return ConnectionBroke(f"the reply's body is not valid HTTP/1.1 ({text})")
    if "receive buffer too long" in text.lower():
        return MalformedReply("the reply's header is too large")
    if "illegal status line" in text:
        return MalformedReply(f"not an HTTP reply ({text})")
    return MalformedReply(f"not a valid HTTP/1.1 reply ({text})")


def _check_line_ends(head: bytes) -> None:
    """RFC 9112 §2.2 lets a recipient take a bare LF as a line end; certfleet does not (nor
    a bare CR): a header value holding one (a cookie, say) is refused, not split in two."""
    crlf = head.count(b"\r\n")
    if head.count(b"\n") == crlf and head.count(b"\r") == crlf:
        return
    for line in head.split(b"\r\n"):
        if b"\n" in line or b"\r" in line:
            raise MalformedReply(f"a header line holds a bare CR or LF: {line[:80]!r}")


def _reply(response: h11.Response, body: bytes) -> HttpReply:
    headers: dict[str, str] = {}
    cookies: dict[str, str] = {}
    for raw_name, raw_value in response.headers.raw_items():
        name, value = raw_name.lower().decode("latin-1"), raw_value.decode("latin-1")
        if name == "set-cookie":
            pair = value.split(";", 1)[0]
            key, eq, cookie = pair.partition("=")
            if eq:
                cookies[key.strip()] = cookie.strip().strip('"')
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return HttpReply(response.status_code, headers, cookies, body)
