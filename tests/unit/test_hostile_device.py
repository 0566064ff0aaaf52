"""A hostile device: a tiny TLS server on 127.0.0.1, inside the test, that answers each request
with the raw bytes a script gives — things no well-behaved server library would send (a bare
LF in a Set-Cookie, a reply of millions of elements). The local transport must refuse them as
bad replies and never echo them back."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme

from certfleet.fleet.errors import DeviceError
from certfleet.fleet.inventory import Device, load_inventory
from certfleet.fleet.secrets import Secret
from certfleet.fleet.xapi._config import RetryPolicy, Timeouts
from certfleet.fleet.xapi.commands import Xapi
from certfleet.fleet.xapi.local import LocalClients, LocalTransport

FAST = RetryPolicy(attempts=2, base=0.01, cap=0.02)
Script = Callable[[bytes], bytes]  # request head → raw reply


@dataclass
class Hostile:
    port: int
    ca_file: Path
    heads: list[bytes] = field(default_factory=list)

    def device(self, tmp_path: Path) -> Device:
        inv = tmp_path / "hostile.yaml"
        inv.write_text(
            "defaults: {username: admin, password: 'env:CF_HOSTILE_PW', "
            f"verify: 'ca:{self.ca_file}'}}\n"
            f"devices:\n  evil-1: {{host: 127.0.0.1, port: {self.port}}}\n"
        )
        return load_inventory(inv).devices["evil-1"]


Start = Callable[[Script], Awaitable[Hostile]]


@pytest.fixture
async def hostile(tmp_path: Path) -> AsyncIterator[Start]:
    """Starts a hostile device that answers each request as ``script`` says."""
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    ca_file = tmp_path / "hostile-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    servers: list[asyncio.Server] = []

    async def start(script: Script) -> Hostile:
        state = Hostile(0, ca_file)

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                                   if line.lower().startswith(b"content-length:")), 0)
                    await reader.readexactly(length)
                    state.heads.append(head)
                    writer.write(script(head))
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=ctx)
        servers.append(server)
        state.port = server.sockets[0].getsockname()[1]
        return state

    yield start
    for server in servers:
        server.close()


def reply(status: str, body: bytes = b"", *headers: str) -> bytes:
    head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def transport(device: Device, *, read: float = 5.0) -> LocalTransport:
    client = LocalClients(timeouts=Timeouts(connect=2.0, read=read)).device_client(device.verify)
    return LocalTransport(device, client, Secret("hostile-pw-0412"), retry=FAST,
                          owns_client=True)


# ------------------------------------------------------------------------ Set-Cookie


@pytest.mark.parametrize("cookie", ["abc\nX-Evil: 1", "abc\rX-Evil: 1", "abc\x00def",
                                    "abc\x1b[2Jdef", "abc def"])
async def test_a_set_cookie_with_control_characters_is_a_bad_reply_never_echoed(
    hostile: Start, tmp_path: Path, cookie: str
) -> None:
    def script(head: bytes) -> bytes:
        if head.startswith(b"POST /xmlapi/session/begin"):
            return reply("204 No Content", b"", f"Set-Cookie: SessionId={cookie}; Path=/")
        return reply("200 OK", b"<Command/>")

    server = await hostile(script)
    with pytest.raises(DeviceError) as info:
        async with transport(server.device(tmp_path)) as xapi:
            await Xapi(xapi).ca_show()
    assert info.value.kind == "bad-reply"
    assert "SessionId" in info.value.message
    # only the login went out: the cookie was never sent back in any form
    assert len(server.heads) == 1
    assert b"X-Evil" not in b"".join(server.heads[1:])


# ------------------------------------------------------------------- huge replies


def session_then(body: bytes) -> Script:
    def script(head: bytes) -> bytes:
        if head.startswith(b"POST /xmlapi/session/begin"):
            return reply("204 No Content", b"", "Set-Cookie: SessionId=ok123; Path=/")
        if head.startswith(b"POST /xmlapi/session/end"):
            return reply("204 No Content")
        return reply("200 OK", body, "Content-Type: text/xml")
    return script


@pytest.mark.parametrize("body", [
    b"<Command>" + b"<a>" * 100_000 + b"</a>" * 100_000 + b"</Command>",
    b"<Command><CAShowResult>" + b"<a/>" * 3_000_000 + b"</CAShowResult></Command>",
], ids=["100k-nested", "3M-elements"])
async def test_a_reply_too_deep_or_too_many_elements_is_a_bad_reply(
    hostile: Start, tmp_path: Path, body: bytes
) -> None:
    server = await hostile(session_then(body))
    started = time.perf_counter()
    with pytest.raises(DeviceError) as info:
        async with transport(server.device(tmp_path)) as xapi:
            await Xapi(xapi).ca_show()
    assert info.value.kind == "bad-reply"
    # stopped at the bound (unbounded, the 3M elements took ~20 s and a gigabyte); generous,
    # as parallel workers share the cores
    assert time.perf_counter() - started < 10.0


async def test_a_large_reply_is_parsed_off_the_event_loop(hostile: Start, tmp_path: Path) -> None:
    rows = b"".join(b'<Details item="%d"><Fingerprint>%040x</Fingerprint>'
                    b"<SubjectName>/CN=r%d</SubjectName></Details>" % (i, i, i)
                    for i in range(1, 30001))
    body = b'<Command><CAShowResult status="OK">' + rows + b"</CAShowResult></Command>"
    server = await hostile(session_then(body))
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    async with transport(server.device(tmp_path)) as xapi:
        ticking = asyncio.create_task(ticker())
        started = time.perf_counter()
        try:
            shown = await xapi.command(("Security", "Certificates", "CA", "Show"))
            took = time.perf_counter() - started
            await asyncio.sleep(0.05)  # the ticker records the pause it is waking from
        finally:
            ticking.cancel()
    assert len(shown["Details"]) == 30000
    # parsing is most of the call (about half a second on an idle machine); the loop kept
    # running meanwhile: no pause anywhere near as long as the call (relative, so a loaded
    # machine does not make it flaky)
    assert max(gaps) < took / 3, (max(gaps), took)
