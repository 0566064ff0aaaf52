"""The HTTP client devices are reached with (StreamClient), over real sockets and real TLS on
loopback (a small aiohttp server with trustme certificates): what each failure maps to, that a
pin is checked before any HTTP is sent, that no cookie is kept and no proxy is used, keep-alive,
chunked replies, Connection: close, and answers that are not HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import trustme
from aiohttp import web

from certfleet.fleet.xapi._http import (
    ConnectFailed,
    ConnectionBroke,
    ReplyTimedOut,
    StreamClient,
    TlsRejected,
    open_tls,
)


@dataclass
class Server:
    url: str
    ca: trustme.CA
    cert_der: bytes
    seen: list[web.Request] = field(default_factory=list)

    peers: list[object] = field(default_factory=list)

    def connections(self) -> int:
        """How many client connections the requests came on (by the client's address)."""
        return len(set(self.peers))


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(ctx)
    seen: list[web.Request] = []
    peers: list[object] = []
    released = asyncio.Event()

    async def echo(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        assert request.transport is not None
        peers.append(request.transport.get_extra_info("peername"))
        body = await request.read()
        if request.path == "/slow":  # answers only when the test is over
            await released.wait()
        if request.path == "/chunked":
            chunked = web.StreamResponse()
            chunked.enable_chunked_encoding()
            await chunked.prepare(request)
            for part in (b"<Status>", b"<A>1</A>" * 500, b"</Status>"):
                await chunked.write(part)
            await chunked.write_eof()
            return chunked
        if request.path == "/close":
            return web.Response(body=b"bye", headers={"Connection": "close"})
        if request.path == "/half":
            response = web.StreamResponse(headers={"Content-Length": "1000"})
            await response.prepare(request)
            await response.write(b"<Status>")
            assert request.transport is not None
            request.transport.abort()
            return response
        response = web.Response(
            body=b"cookie=" + request.headers.get("Cookie", "").encode() + b";query="
            + request.query.get("location", "").encode() + b";body=" + body,
            headers={"Retry-After": "3"},
        )
        response.set_cookie("SessionId", "abc123")
        return response

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    der = ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())
    try:
        yield Server(f"https://127.0.0.1:{port}", ca, der, seen, peers)
    finally:
        released.set()
        await runner.cleanup()


def trusting(server: Server) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    server.ca.configure_trust(ctx)
    return ctx


def client(ctx: ssl.SSLContext, **kwargs: object) -> StreamClient:
    return StreamClient(ctx, connect_timeout=2.0, read_timeout=5.0, **kwargs)  # type: ignore[arg-type]


async def test_a_reply_with_cookies_headers_and_query(server: Server) -> None:
    http = client(trusting(server))
    try:
        first = await http.request("POST", server.url + "/getxml",
                                   headers={"Content-Type": "text/xml"}, body=b"<x/>",
                                   query={"location": "/Status/SystemUnit"})
        again = await http.request("GET", server.url + "/getxml", headers={})
    finally:
        await http.aclose()
    assert first.status == 200
    assert first.cookies == {"SessionId": "abc123"}
    assert first.headers["retry-after"] == "3"  # names lower-case
    assert first.body == b"cookie=;query=/Status/SystemUnit;body=<x/>"
    # the cookie the server set is not sent back by itself: sessions are the caller's
    assert again.body.startswith(b"cookie=;")


async def test_a_pinned_certificate_is_checked_before_any_http(server: Server) -> None:
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    wrong = client(unverified, pin_sha256="00" * 32)
    try:
        with pytest.raises(TlsRejected) as caught:
            await wrong.request("POST", server.url + "/xmlapi/session/begin",
                                headers={"Authorization": "Basic c2VjcmV0"})
    finally:
        await wrong.aclose()
    assert caught.value.pinned and not caught.value.sent
    assert server.seen == []  # the credentials never left
    right = client(unverified, pin_sha256=hashlib.sha256(server.cert_der).hexdigest())
    try:
        reply = await right.request("GET", server.url + "/", headers={})
    finally:
        await right.aclose()
    assert reply.status == 200


async def test_an_untrusted_certificate_is_refused(server: Server) -> None:
    http = client(ssl.create_default_context())  # the system store does not know trustme's CA
    try:
        with pytest.raises(TlsRejected) as caught:
            await http.request("GET", server.url + "/", headers={})
    finally:
        await http.aclose()
    assert not caught.value.pinned and "verify" in caught.value.message
    assert server.seen == []


async def test_nothing_listening_is_a_connect_failure() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    http = client(ssl.create_default_context())
    try:
        with pytest.raises(ConnectFailed) as caught:
            await http.request("GET", f"https://127.0.0.1:{port}/", headers={})
    finally:
        await http.aclose()
    assert caught.value.sent is False


async def test_a_reply_that_stops_halfway_broke_after_sending(server: Server) -> None:
    http = client(trusting(server))
    try:
        with pytest.raises(ConnectionBroke) as caught:
            await http.request("POST", server.url + "/half", headers={}, body=b"<x/>")
    finally:
        await http.aclose()
    assert caught.value.sent is True


async def test_no_reply_in_time_is_a_reply_timeout(server: Server) -> None:
    http = client(trusting(server))
    try:
        with pytest.raises(ReplyTimedOut) as caught:
            await http.request("GET", server.url + "/slow", headers={}, timeout=0.2)
    finally:
        await http.aclose()
    assert caught.value.sent is True and "0.2s" in caught.value.message


async def test_proxies_from_the_environment_are_not_used(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # nothing there: would fail
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    http = client(trusting(server))
    try:
        reply = await http.request("GET", server.url + "/", headers={})
    finally:
        await http.aclose()
    assert reply.status == 200


async def test_one_connection_carries_a_device_s_requests(server: Server) -> None:
    http = client(trusting(server))
    try:
        for _ in range(4):
            assert (await http.request("GET", server.url + "/", headers={})).status == 200
        chunked = await http.request("GET", server.url + "/chunked", headers={})
        after = await http.request("POST", server.url + "/x", headers={}, body=b"<y/>")
    finally:
        await http.aclose()
    assert chunked.body == b"<Status>" + b"<A>1</A>" * 500 + b"</Status>"
    assert after.body.endswith(b"body=<y/>")  # the chunked reply was read to its end
    assert server.connections() == 1


async def test_connection_close_is_honoured_and_the_next_request_reconnects(
    server: Server,
) -> None:
    http = client(trusting(server))
    try:
        assert (await http.request("GET", server.url + "/close", headers={})).body == b"bye"
        assert (await http.request("GET", server.url + "/", headers={})).status == 200
    finally:
        await http.aclose()
    assert server.connections() == 2


async def test_an_answer_that_is_not_http_breaks_the_connection(tmp_path: object) -> None:
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"<html>this is not HTTP</html>\r\n\r\n")
        await writer.drain()
        writer.close()

    listener = await asyncio.start_server(garbage, "127.0.0.1", 0, ssl=ctx)
    port = listener.sockets[0].getsockname()[1]
    trust = ssl.create_default_context()
    ca.configure_trust(trust)
    http = client(trust)
    try:
        with pytest.raises(ConnectionBroke, match="not an HTTP reply"):
            await http.request("GET", f"https://127.0.0.1:{port}/", headers={})
    finally:
        await http.aclose()
        listener.close()


# ------------------------------------------------------------- RFC 9112 replies, SNI


async def raw_server(answer: bytes) -> tuple[asyncio.Server, int, trustme.CA, list[str | None]]:
    """A TLS server on loopback that reads one request and writes ``answer`` byte for byte,
    then closes; records the SNI each handshake carried."""
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    names: list[str | None] = []

    def sni(sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        names.append(name)

    ctx.sni_callback = sni  # type: ignore[assignment]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            await writer.drain()
        finally:
            writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    return listener, listener.sockets[0].getsockname()[1], ca, names


@pytest.mark.parametrize(("answer", "body", "header"), [
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
                 b"hello", None, id="two identical Content-Length"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Folded: first\r\n  second\r\n\r\n"
                 b"hello", b"hello", ("x-folded", "first second"), id="obs-fold"),
    pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"3;ext=1\r\nhel\r\n2\r\nlo\r\n0\r\nX-Trailer: t\r\nX-Other: u\r\n\r\n",
                 b"hello", None, id="chunked with trailers"),
    pytest.param(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello until the end",
                 b"hello until the end", None, id="Connection: close, no length"),
    pytest.param(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                 b"ok", None, id="interim 100 first"),
])
async def test_replies_rfc_9112_allows_are_read(
    answer: bytes, body: bytes, header: tuple[str, str] | None,
) -> None:
    listener, port, ca, _ = await raw_server(answer)
    trust = ssl.create_default_context()
    ca.configure_trust(trust)
    http = client(trust)
    try:
        reply = await http.request("GET", f"https://127.0.0.1:{port}/getxml", headers={})
    finally:
        await http.aclose()
        listener.close()
    assert reply.status == 200
    assert reply.body == body
    if header is not None:
        assert reply.headers[header[0]] == header[1]


async def test_two_different_content_lengths_are_refused() -> None:
    listener, port, ca, _ = await raw_server(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!")
    trust = ssl.create_default_context()
    ca.configure_trust(trust)
    http = client(trust)
    try:
        with pytest.raises(ConnectionBroke, match=r"not a valid HTTP/1\.1 reply"):
            await http.request("GET", f"https://127.0.0.1:{port}/", headers={})
    finally:
        await http.aclose()
        listener.close()


async def test_sni_names_a_dns_host_in_pin_mode_and_never_an_ip_literal() -> None:
    listener, port, _, names = await raw_server(b"HTTP/1.1 204 No Content\r\n\r\n")
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    try:
        for host in ("localhost", "127.0.0.1"):
            probe = await open_tls(host, port, unverified, timeout=2.0)
            probe[1].close()
            der = probe[2]
            assert der is not None
            http = client(unverified, pin_sha256=hashlib.sha256(der).hexdigest())
            try:
                assert (await http.request("GET", f"https://{host}:{port}/", headers={})
                        ).status == 204
            finally:
                await http.aclose()
    finally:
        listener.close()
    assert names == ["localhost", "localhost", None, None]


async def test_a_header_value_with_a_line_break_is_refused_before_sending(server: Server) -> None:
    http = client(trusting(server))
    try:
        with pytest.raises(ConnectFailed, match="refused before sending") as caught:
            await http.request("GET", server.url + "/", headers={"Cookie": "a\r\nX-Evil: 1"})
    finally:
        await http.aclose()
    assert caught.value.sent is False
    assert server.seen == []


async def test_a_request_cancelled_mid_reply_leaves_no_stale_connection(server: Server) -> None:
    # The device's time ran out while a reply was awaited: the next request (a session end,
    # say) must not read that late reply as its own, nor fail on a half-used connection.
    http = client(trusting(server))
    try:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await http.request("GET", server.url + "/slow", headers={})
        reply = await http.request("POST", server.url + "/next", headers={}, body=b"<n/>")
    finally:
        await http.aclose()
    assert reply.status == 200 and reply.body.endswith(b"body=<n/>")
    assert server.connections() == 2


@pytest.mark.parametrize(("answer", "problem"), [
    (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", "header is too large"),
    (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 300_000 + b"\r\n\r\n", "header is too large"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n", "bytes refused"),
])
async def test_replies_over_the_caps_are_refused(answer: bytes, problem: str) -> None:
    listener, port, ca, _ = await raw_server(answer)
    trust = ssl.create_default_context()
    ca.configure_trust(trust)
    http = client(trust)
    try:
        with pytest.raises(ConnectionBroke, match=problem):
            await http.request("GET", f"https://127.0.0.1:{port}/", headers={})
    finally:
        await http.aclose()
        listener.close()


async def test_a_url_is_read_whole_unless_it_has_the_last_url_s_origin(server: Server) -> None:
    # the client reads a device's origin once and then only the path of the next URL; a URL
    # that merely starts like it (another port, another scheme) is read whole again
    http = client(trusting(server))
    try:
        assert (await http.request("GET", server.url + "/a", headers={})).status == 200
        with pytest.raises(ConnectFailed, match="not an https URL"):
            await http.request("GET", "http" + server.url.removeprefix("https") + "/a",
                               headers={})
        with pytest.raises(ValueError, match="Port out of range"):  # one more digit: read
            await http.request("GET", server.url + "9/a", headers={})  # whole, not sent
        again = await http.request("GET", server.url + "/b?ignored=1", headers={},
                                   query={"location": "/x"})
    finally:
        await http.aclose()
    assert again.body.startswith(b"cookie=;query=/x;")
    assert [r.path for r in server.seen] == ["/a", "/b"]
