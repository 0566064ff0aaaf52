"""fleet.xapi._http — the HTTP requests the local transport makes, behind one small interface.

:class:`HttpClient` is all :class:`~fleet.xapi.local.LocalTransport` needs: send one request,
get the whole reply back as an :class:`HttpReply`, or an :class:`HttpFailure` that says
whether the request may have reached the device (``sent``) — the retry rules hang on that.

:class:`StreamClient` is what runs against devices: HTTP/1.1 framed by h11, one keep-alive
TLS connection per device, on an asyncio protocol of its own (:mod:`fleet.xapi._http_link`).
:func:`failure_error` says what an :class:`HttpFailure` is in certfleet's error tree, for
every transport that meets one.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections.abc import Callable, Mapping
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
from ._config import USER_AGENT, is_ip_literal
from ._http_link import (
    CHUNK,
    END,
    MAX_HEAD_BYTES,
    MAX_REPLY_BYTES,
    ConnectFailed,
    ConnectionBroke,
    ConnectTimedOut,
    HttpFailure,
    HttpReply,
    Link,
    MalformedReply,
    ReplyTimedOut,
    TlsRejected,
)

__all__ = [
    "MAX_HEAD_BYTES",
    "MAX_REPLY_BYTES",
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
    replies); :class:`~fleet.xapi._http_link.Link`, an asyncio protocol, feeds it the bytes
    as they come.

    Why not httpx or aiohttp: a fleet run is thousands of short requests, and on this path
    aiohttp cost a quarter more client CPU per device than the same exchange on bare streams
    (bench/fleet_bench.py, rows ``status`` and ``floor``), and its import a tenth of a second
    of every run. Nor asyncio streams: a reader and writer between the socket and h11 cost
    CPU on every request for bytes that go straight into h11 anyway.
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
        self._link: Link | None = None
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
            _, link, _ = await _connect(Link, host, port, self._ctx, pin_sha256=self._pin,
                                        timeout=self._connect_timeout, peer_der=False)
            self._link = link
            self._origin = (host, port)
        connection = link.h11
        limit = timeout or self._read_timeout
        reply = link.expect(limit)
        try:
            message = connection.send(request)
            if body and len(body) > CHUNK:
                await link.write_body(message, body)
            else:
                if body:
                    message += connection.send(h11.Data(data=body))
                link.write(message + connection.send(END))
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


