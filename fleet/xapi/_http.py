"""fleet.xapi._http — the HTTP requests the local transport makes, behind one small interface.

:class:`HttpClient` is all :class:`~fleet.xapi.local.LocalTransport` needs: send one request,
get the whole reply back as an :class:`HttpReply`, or an :class:`HttpFailure` that says
whether the request may have reached the device (``sent``) — the retry rules hang on that.

Two implementations:

* :class:`StreamClient`, what runs against devices: HTTP/1.1 on asyncio streams, one
  keep-alive TLS connection per device (see the class for why not a library);
* :class:`fleet.xapi._httpx.HttpxClient`, the same interface over an ``httpx.AsyncClient``:
  unit tests drive the transport's edge cases through ``httpx.MockTransport`` / respx.
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

from fleet.secrets import redact

__all__ = [
    "ConnectFailed",
    "ConnectTimedOut",
    "ConnectionBroke",
    "HttpClient",
    "HttpFailure",
    "HttpReply",
    "ReplyTimedOut",
    "StreamClient",
    "TlsRejected",
    "open_tls",
]

_USER_AGENT = "certfleet/0.1"


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
_NO_BODY = frozenset({204, 304})


async def open_tls(
    host: str, port: int, ctx: ssl.SSLContext, *, timeout: float, pin_sha256: str | None = None,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes | None]:
    """A TLS connection verified by ``ctx`` (hostname included when it checks hostnames) or,
    with ``pin_sha256``, by the certificate's SHA-256 — checked before anything is sent.
    Returns the streams and the DER of the certificate presented. Raises
    :class:`TlsRejected`, :class:`ConnectTimedOut` or :class:`ConnectFailed`."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                host, port, ssl=ctx, server_hostname=host if ctx.check_hostname else "",
            )
    except ssl.SSLCertVerificationError as exc:
        raise TlsRejected(f"certificate verify failed: {exc.verify_message or exc}") from None
    except TimeoutError:
        raise ConnectTimedOut("connection timed out") from None
    except (OSError, ssl.SSLError) as exc:
        raise ConnectFailed(str(exc) or type(exc).__name__) from None
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


class StreamClient:
    """One device's HTTP/1.1 client on asyncio streams: one keep-alive TLS connection,
    requests one at a time (a device's calls are sequential).

    Why not a library: a fleet run is thousands of short requests, and on this path aiohttp
    cost a quarter more client CPU per device than the same exchange on bare streams
    (bench/fleet_bench.py, rows ``status`` and ``floor``), and its import a tenth of a second
    of every run. What the xAPI needs is small and fixed: GET and POST, Content-Length or
    chunked replies, Set-Cookie. TLS is verified by ``ssl_context`` (hostname included), or,
    with ``pin_sha256`` (the context then does not verify), by comparing the certificate's
    SHA-256 right after the handshake — before a byte of HTTP, so credentials never reach a
    device that is not the pinned one. No cookie jar, no proxies, no redirects followed."""

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
        self._stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._origin: tuple[str, int] | None = None

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
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise ConnectFailed(f"not an https URL: {url}")
        host, port = parts.hostname, parts.port or 443
        if self._origin not in (None, (host, port)):
            await self.aclose()  # one client, one device: a new origin gets a new connection
        target = parts.path or "/"
        if query:
            target += "?" + urlencode(query, safe="/")
        head = [f"{method} {target} HTTP/1.1",
                f"Host: {parts.netloc.rsplit('@', 1)[-1]}",
                f"User-Agent: {_USER_AGENT}"]
        if body is not None or method in ("POST", "PUT", "PATCH"):
            head.append(f"Content-Length: {len(body or b'')}")
        head += [f"{name}: {value}" for name, value in headers.items()]
        message = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (body or b"")

        stream = self._stream
        if stream is not None and (stream[0].at_eof() or stream[1].is_closing()):
            await self.aclose()  # the device closed the idle connection
            stream = None
        if stream is None:
            reader, writer, _ = await open_tls(host, port, self._ctx, pin_sha256=self._pin,
                                               timeout=self._connect_timeout)
            stream = self._stream = (reader, writer)
            self._origin = (host, port)
        reader, writer = stream
        try:
            async with asyncio.timeout(timeout or self._read_timeout):
                writer.write(message)
                await writer.drain()
                reply, keep = await _read_reply(reader, method)
        except TimeoutError:
            await self.aclose()
            raise ReplyTimedOut(f"no reply within {timeout or self._read_timeout:g}s") from None
        except asyncio.IncompleteReadError as exc:
            await self.aclose()
            raise ConnectionBroke(
                f"the reply stopped after {len(exc.partial)} of {exc.expected or '?'} bytes"
                if exc.partial else "the device closed the connection without a reply"
            ) from None
        except asyncio.LimitOverrunError:
            await self.aclose()
            raise ConnectionBroke("the reply's header is too large") from None
        except (OSError, ssl.SSLError, ValueError) as exc:
            await self.aclose()
            raise ConnectionBroke(str(exc) or type(exc).__name__) from None
        if not keep:
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


async def _read_reply(reader: asyncio.StreamReader, method: str) -> tuple[HttpReply, bool]:
    """One reply (1xx interim replies skipped) and whether the connection stays open.
    ValueError for what is not HTTP/1.x."""
    while True:
        raw = await reader.readuntil(b"\r\n\r\n")
        lines = raw[:-4].decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise ValueError(f"not an HTTP reply: {lines[0][:60]!r}")
        status = int(code)
        if not 100 <= status < 200:
            break
    headers: dict[str, str] = {}
    cookies: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"malformed header line {line[:60]!r}")
        name, value = name.strip().lower(), value.strip()
        if name == "set-cookie":
            pair = value.split(";", 1)[0]
            key, eq, cookie = pair.partition("=")
            if eq:
                cookies[key.strip()] = cookie.strip().strip('"')
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    connection = headers.get("connection", "").lower()
    keep = "close" not in connection and (version != "HTTP/1.0" or "keep-alive" in connection)
    if method == "HEAD" or status in _NO_BODY:
        return HttpReply(status, headers, cookies, b""), keep
    if "chunked" in headers.get("transfer-encoding", "").lower():
        content = await _read_chunked(reader)
    elif "content-length" in headers:
        length = int(headers["content-length"])
        if not 0 <= length <= MAX_REPLY_BYTES:
            raise ValueError(f"reply of {length} bytes refused")
        content = await reader.readexactly(length)
    else:  # delimited by the end of the connection
        content = await reader.read(MAX_REPLY_BYTES + 1)
        while len(content) <= MAX_REPLY_BYTES and not reader.at_eof():
            more = await reader.read(MAX_REPLY_BYTES + 1 - len(content))
            if not more:
                break
            content += more
        if len(content) > MAX_REPLY_BYTES:
            raise ValueError("reply larger than the limit refused")
        keep = False
    return HttpReply(status, headers, cookies, content), keep


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip() or b"x", 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers, if any
                pass
            return b"".join(parts)
        total += size
        if total > MAX_REPLY_BYTES:
            raise ValueError("reply larger than the limit refused")
        parts.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise ValueError("malformed chunked reply")
