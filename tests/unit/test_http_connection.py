"""StreamClient's connection on its own asyncio protocol, against small TLS servers on loopback
that write raw bytes: bytes nobody asked for are never read as a reply, a device that closes
an idle connection costs a reconnect and not a failure, and a large body is written under the
transport's flow control (and times out when the device stops reading)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import trustme

from certfleet.fleet.xapi._http import ReplyTimedOut, StreamClient

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
FRESH = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh"


class Tls:
    def __init__(self) -> None:
        self.ca = trustme.CA()
        self.server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1").configure_cert(self.server)
        self.connections = 0

    def client(self) -> StreamClient:
        trust = ssl.create_default_context()
        self.ca.configure_trust(trust)
        return StreamClient(trust, connect_timeout=2.0, read_timeout=5.0)


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[tuple[Tls, str]]]]:
    listeners: list[asyncio.Server] = []

    async def start(handler: Handler) -> tuple[Tls, str]:
        tls = Tls()

        async def counted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            tls.connections += 1
            try:
                await handler(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
                pass
            finally:
                writer.close()

        listener = await asyncio.start_server(counted, "127.0.0.1", 0, ssl=tls.server)
        listeners.append(listener)
        return tls, f"https://127.0.0.1:{listener.sockets[0].getsockname()[1]}"

    yield start
    for listener in listeners:
        listener.close()


async def requests_then(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        answers: list[bytes]) -> None:
    """Answer each request on this connection with the next of ``answers``, then wait."""
    for answer in answers:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
    await reader.read()


async def test_bytes_after_a_reply_s_end_are_never_read_as_the_next_reply(
    serve: Callable[[Handler], Awaitable[tuple[Tls, str]]],
) -> None:
    stale = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale"
    first = True

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal first
        answers = [OK + stale, FRESH] if first else [FRESH, FRESH]
        first = False
        await requests_then(reader, writer, answers)

    tls, url = await serve(handler)
    http = tls.client()
    try:
        assert (await http.request("GET", url + "/a", headers={})).body == b"ok"
        assert (await http.request("GET", url + "/b", headers={})).body == b"fresh"
    finally:
        await http.aclose()
    assert tls.connections == 2  # the connection that sent more than its reply was dropped


async def test_a_reply_nobody_asked_for_is_never_read_as_the_next_one(
    serve: Callable[[Handler], Awaitable[tuple[Tls, str]]],
) -> None:
    # an idle connection the device ends with a 408 it sends by itself (RFC 9110 §15.5.9)
    first = True

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal first
        if first:
            first = False
            await reader.readuntil(b"\r\n\r\n")
            writer.write(OK)
            await asyncio.sleep(0.05)
            writer.write(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            await reader.read()
        else:
            await requests_then(reader, writer, [FRESH])

    tls, url = await serve(handler)
    http = tls.client()
    try:
        assert (await http.request("GET", url + "/a", headers={})).body == b"ok"
        await asyncio.sleep(0.2)
        second = await http.request("GET", url + "/b", headers={})
    finally:
        await http.aclose()
    assert (second.status, second.body) == (200, b"fresh")
    assert tls.connections == 2


async def test_an_idle_connection_the_device_closed_is_replaced(
    serve: Callable[[Handler], Awaitable[tuple[Tls, str]]],
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(OK)  # keep-alive as far as the reply says, then closed all the same
        await writer.drain()

    tls, url = await serve(handler)
    http = tls.client()
    try:
        for _ in range(3):
            assert (await http.request("GET", url + "/", headers={})).body == b"ok"
            await asyncio.sleep(0.05)  # the close arrives while the connection is idle
    finally:
        await http.aclose()
    assert tls.connections == 3


async def test_a_large_body_is_written_whole(
    serve: Callable[[Handler], Awaitable[tuple[Tls, str]]],
) -> None:
    body = bytes(range(256)) * (8 * 1024 * 4)  # 8 MiB: far past the transport's high-water

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        received = await reader.readexactly(length)
        answer = b"%d %s" % (len(received), b"same" if received == body else b"differs")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(answer), answer))
        await writer.drain()
        await reader.read()

    tls, url = await serve(handler)
    http = tls.client()
    try:
        reply = await http.request("POST", url + "/putxml", headers={}, body=body)
    finally:
        await http.aclose()
    assert reply.body == b"%d same" % len(body)


async def test_a_device_that_stops_reading_a_large_body_times_out(
    serve: Callable[[Handler], Awaitable[tuple[Tls, str]]],
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(5)  # reads no more: the client's writes back up

    tls, url = await serve(handler)
    http = tls.client()
    try:
        with pytest.raises(ReplyTimedOut, match=r"no reply within 0\.3s"):
            await http.request("POST", url + "/putxml", headers={},
                               body=b"x" * (32 * 1024 * 1024), timeout=0.3)
    finally:
        await http.aclose()


async def test_each_request_on_a_connection_has_its_own_timeout(
    serve: Callable[[Handler], Awaitable[tuple[Tls, str]]],
) -> None:
    # one connection, requests with different time limits: a short one after a long one
    # times out at its own limit, and a long one after a short one is not cut at the short's
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if head.startswith(b"GET /late"):
                await asyncio.sleep(0.6)
            writer.write(OK)
            await writer.drain()

    tls, url = await serve(handler)
    http = tls.client()  # read timeout 5 s
    try:
        assert (await http.request("GET", url + "/", headers={})).body == b"ok"
        with pytest.raises(ReplyTimedOut, match=r"no reply within 0\.2s"):
            await http.request("GET", url + "/late", headers={}, timeout=0.2)
        assert (await http.request("GET", url + "/", headers={}, timeout=0.3)).body == b"ok"
        assert (await http.request("GET", url + "/late", headers={}, timeout=3.0)).body == b"ok"
    finally:
        await http.aclose()
    assert tls.connections == 2  # the timed-out request's connection was not used again
