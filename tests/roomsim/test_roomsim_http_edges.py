"""The device's web server at the edges of HTTP, byte for byte over a raw TLS socket: what
aiohttp's routing and Expect handling answer before any device logic runs."""

from __future__ import annotations

import asyncio
import base64
import ssl

import pytest


async def exchange(sim, raw: bytes, *, after_interim: bytes | None = None) -> bytes:
    """Send `raw` to room-001 and read until the server closes or goes quiet; with
    `after_interim`, send that once an interim 100 answer has arrived."""
    device = sim.devices["room-001"]
    context = ssl.create_default_context(cafile=str(sim.ca_pem_path))
    reader, writer = await asyncio.open_connection("127.0.0.1", device.port, ssl=context)
    try:
        writer.write(raw)
        await writer.drain()
        received = b""
        while True:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), timeout=1.0)
            except TimeoutError:
                break
            if not chunk:
                break
            received += chunk
            if after_interim is not None and b"100 Continue\r\n\r\n" in received:
                writer.write(after_interim)
                await writer.drain()
                after_interim = None
        return received
    finally:
        writer.close()


def basic(sim) -> str:
    return base64.b64encode(f"admin:{sim.password}".encode()).decode()


def status_and_body(reply: bytes) -> tuple[bytes, bytes]:
    head, _, body = reply.partition(b"\r\n\r\n")
    return head.split(b"\r\n", 1)[0], body


@pytest.mark.parametrize("target", [b"/getxml%0A", b"/%0Aputxml"])
async def test_a_path_no_route_matches_is_not_found_before_any_login(sim, target):
    reply = await exchange(sim, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    status, body = status_and_body(reply)
    assert status == b"HTTP/1.1 404 Not Found"
    assert body == b"404: Not Found"
    assert sim.devices["room-001"].requests_seen == 0  # no device logic ran


async def test_expect_100_continue_gets_the_interim_answer_then_the_reply(sim):
    body = b"<Command><Security><Certificates><CA><Show/></CA></Certificates></Security></Command>"
    head = (f"POST /putxml HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {basic(sim)}\r\n"
            f"Content-Type: text/xml\r\nContent-Length: {len(body)}\r\n"
            "Expect: 100-continue\r\nConnection: close\r\n\r\n").encode()
    reply = await exchange(sim, head, after_interim=body)
    assert reply.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")
    assert b'<CAShowResult status="OK">' in reply


async def test_an_unknown_expectation_is_refused(sim):
    reply = await exchange(sim, b"GET /getxml?location=/Status HTTP/1.1\r\nHost: x\r\n"
                                b"Expect: teapot\r\nConnection: close\r\n\r\n")
    status, body = status_and_body(reply)
    assert status == b"HTTP/1.1 417 Expectation Failed"
    assert body == b"Unknown Expect: teapot"
