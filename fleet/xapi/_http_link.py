"""fleet.xapi._http_link — one device connection's reply side, for :mod:`fleet.xapi._http`.

:class:`Link` is the asyncio protocol under :class:`~fleet.xapi._http.StreamClient`: the
bytes a TLS connection receives go straight into its h11 connection, and the request waiting
gets an :class:`HttpReply` or an :class:`HttpFailure` (whose kinds are defined here and
exported by :mod:`fleet.xapi._http`, where every caller imports them from).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

import h11

from ..secrets import redact


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


#: the largest reply accepted from a device (a certificate list is a few hundred KiB at most)
MAX_REPLY_BYTES = 16 * 1024 * 1024
#: the largest status line + header block accepted
MAX_HEAD_BYTES = 64 * 1024
#: a body larger than this is written a piece this size at a time, under flow control
CHUNK = 256 * 1024


class Link(asyncio.Protocol):
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
        for start in range(0, len(body), CHUNK):
            if reply is None or reply.done():
                return
            self.write(connection.send(h11.Data(data=body[start:start + CHUNK])))
            if self.paused:
                drain = self._drain = self.loop.create_future()
                await drain
        self.write(connection.send(END))

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
        # a read-write transport, though not always an asyncio.Transport subclass (uvloop's
        # TLS transport is its own class with the same methods)
        self.transport = cast(asyncio.Transport, transport)

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
END = h11.EndOfMessage()


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
