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
import contextlib
import hashlib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol
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
_READ_SIZE = 64 * 1024


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
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                # SNI names the device in every verify mode (a device serving several names
                # picks its certificate by it); an IP literal is never sent as SNI, but is
                # what a hostname check matches the certificate against
                host, port, ssl=ctx,
                server_hostname=host if ctx.check_hostname or not is_ip_literal(host) else "",
            )
    except ssl.SSLCertVerificationError as exc:
        raise TlsRejected(f"certificate verify failed: {exc.verify_message or exc}") from None
    except TimeoutError:
        raise ConnectTimedOut("connection timed out") from None
    except (OSError, ssl.SSLError) as exc:
        raise ConnectFailed(str(exc) or type(exc).__name__) from None
    if pin_sha256 is None and not peer_der:
        return reader, writer, None
    ssl_object = writer.get_extra_info("ssl_object")
    der: bytes | None = ssl_object.getpeercert(binary_form=True) if ssl_object else None
    if pin_sha256 is not None:
        seen = hashlib.sha256(der).hexdigest() if der else "no certificate"
        if seen != pin_sha256:
            writer.close()
            raise TlsRejected(
                f"certificate SHA-256 {seen} does not match the pinned {pin_sha256}",
                pinned=True,
            )
    return reader, writer, der




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
    """One device's HTTP/1.1 client on asyncio streams: one keep-alive TLS connection,
    requests one at a time (a device's calls are sequential). h11 does the framing (RFC 9112:
    Content-Length, chunked with trailers, replies delimited by the connection's end,
    obs-fold, interim 1xx replies); this class does the rest.

    Why not httpx or aiohttp: a fleet run is thousands of short requests, and on this path
    aiohttp cost a quarter more client CPU per device than the same exchange on bare streams
    (bench/fleet_bench.py, rows ``status`` and ``floor``), and its import a tenth of a second
    of every run. TLS is verified by ``ssl_context`` (hostname included), or, with
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
        self._stream: tuple[asyncio.StreamReader, asyncio.StreamWriter, h11.Connection] | None
        self._stream = None
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
        stream = self._stream
        if stream is not None and (stream[0].at_eof() or stream[1].is_closing()
                                   or stream[2].our_state is not h11.IDLE):
            # the device closed the idle connection, or a request on it was cancelled
            # half-way (its late reply must not be read as the next one's)
            await self.aclose()
            stream = None
        if stream is None:
            reader, writer, _ = await open_tls(host, port, self._ctx, pin_sha256=self._pin,
                                               timeout=self._connect_timeout, peer_der=False)
            connection = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_BYTES)
            stream = self._stream = (reader, writer, connection)
            self._origin = (host, port)
        reader, writer, connection = stream
        limit = timeout or self._read_timeout
        message = connection.send(request)
        if body:
            message += connection.send(h11.Data(data=body))
        message += connection.send(_END)
        try:
            async with asyncio.timeout(limit):
                writer.write(message)
                await writer.drain()
                reply = await _read_reply(reader, connection, method)
        except TimeoutError:
            await self.aclose()
            raise ReplyTimedOut(f"no reply within {limit:g}s") from None
        except HttpFailure:
            await self.aclose()
            raise
        except (OSError, ssl.SSLError) as exc:
            await self.aclose()
            raise ConnectionBroke(str(exc) or type(exc).__name__) from None
        if connection.our_state is h11.DONE and connection.their_state is h11.DONE:
            connection.start_next_cycle()  # keep-alive
        else:
            await self.aclose()
        return reply

    async def aclose(self) -> None:
        stream, self._stream, self._origin = self._stream, None, None
        if stream is None:
            return
        writer = stream[1]
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
            async with asyncio.timeout(1.0):
                await writer.wait_closed()


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


async def _read_reply(reader: asyncio.StreamReader, connection: h11.Connection,
                      method: str) -> HttpReply:
    """One whole reply (interim 1xx replies skipped), its size capped."""
    response: h11.Response | None = None
    head: list[bytes] = []  # what came before the reply's head was parsed
    parts: list[bytes] = []
    total = 0
    if connection.trailing_data == (b"", False):
        # nothing left over from the last reply: h11 can only say NEED_DATA, so read first
        data = await reader.read(_READ_SIZE)
        if not data:
            raise ConnectionBroke("the device closed the connection without a reply")
        head.append(data)
        connection.receive_data(data)
    while True:
        try:
            event = connection.next_event()
        except h11.RemoteProtocolError as exc:
            raise _protocol_problem(exc, head_done=response is not None) from None
        if event is h11.NEED_DATA:
            data = await reader.read(_READ_SIZE)
            if not data and response is None and not head:
                raise ConnectionBroke("the device closed the connection without a reply")
            if response is None:
                head.append(data)
            connection.receive_data(data)
            continue
        # h11's event classes are exact (never subclassed): a type test, not isinstance
        # (ABCMeta's, a Python call per test, on every event of every reply)
        if type(event) is h11.InformationalResponse:
            continue
        if type(event) is h11.Response:
            response = event
            received = b"".join(head)
            head_bytes = received[:len(received) - len(connection.trailing_data[0])]
            if len(head_bytes) > MAX_HEAD_BYTES:  # h11 checks only a head still incomplete
                raise MalformedReply("the reply's header is too large")
            _check_line_ends(head_bytes)
            for raw_name, raw_value in event.headers.raw_items():
                if raw_name.lower() == b"content-length" and int(raw_value) > MAX_REPLY_BYTES:
                    raise ConnectionBroke(f"reply of {int(raw_value)} bytes refused")
            continue
        if type(event) is h11.Data:
            total += len(event.data)
            if total > MAX_REPLY_BYTES:
                raise ConnectionBroke("reply larger than the limit refused")
            parts.append(bytes(event.data))
            continue
        if type(event) is h11.EndOfMessage:
            break
        # ConnectionClosed or PAUSED before the reply's end
        raise ConnectionBroke("the reply stopped before its end")
    assert response is not None
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
    return HttpReply(response.status_code, headers, cookies, b"".join(parts))
