"""A hostile device: a tiny TLS server on 127.0.0.1, inside the test, that answers each request
with the raw bytes a script gives — things no well-behaved server library would send (a bare
LF in a Set-Cookie, a reply of millions of elements). The local transport must refuse them as
bad replies and never echo them back."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme

from fleet.errors import DeviceError
from fleet.inventory import Device, load_inventory
from fleet.secrets import Secret
from fleet.xapi.commands import Xapi
from fleet.xapi.local import LocalClients, LocalTransport, RetryPolicy, Timeouts

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
