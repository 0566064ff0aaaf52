"""A hostile RoomOS device for tests: real TLS on 127.0.0.1, sessions like a device, and every
getxml/putxml answered with an ``ActionError`` whose Reason the test chooses.

The Reason may quote what the client sent: ``{password}`` is replaced by the password of the
session's Basic login (as it arrived), ``{password_json}`` by the same JSON-escaped (a device that echoes
it inside JSON text), ``{password_repr}`` by Python's repr of its bytes. Texts that XML 1.0 can
carry reach the client as they are (C1 controls, DEL, bidi overrides, CR as ``&#13;``).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from xml.sax.saxutils import escape

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _self_signed(workdir: Path) -> tuple[Path, Path, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hostile-device")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = workdir / "hostile.crt", workdir / "hostile.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    pin = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    return cert_path, key_path, pin


class HostileDevice:
    def __init__(self, workdir: Path, reason: str) -> None:
        self.reason = reason
        self.password = ""
        self.last_login = ""
        self.port = 0
        self.pin = ""
        self._workdir = workdir
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None

    def _login(self, request: web.Request) -> None:
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            self.last_login = header
            self.password = base64.b64decode(header[6:]).decode("utf-8", "replace") \
                .split(":", 1)[1]

    def _answer(self, request: web.Request) -> str:
        self._login(request)
        password = self.password  # as the session's login sent it
        text = (self.reason.replace("{password_json}", json.dumps(password)[1:-1])
                .replace("{password_repr}", repr(password.encode())[2:-1])
                .replace("{password}", password))
        body = escape(text).replace("\r", "&#13;")
        return (f'<?xml version="1.0"?>\n<ActionError><Reason>{body}</Reason>'
                "</ActionError>\n")

    async def _begin(self, request: web.Request) -> web.Response:
        response = web.Response(status=204)
        response.set_cookie("SessionId", "hostile-session", secure=True, httponly=True)
        self._login(request)
        return response

    async def _end(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def _xml(self, request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text=self._answer(request), content_type="text/xml")

    async def _start(self) -> None:
        cert, key, self.pin = _self_signed(self._workdir)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        app = web.Application()
        app.router.add_post("/xmlapi/session/begin", self._begin)
        app.router.add_post("/xmlapi/session/end", self._end)
        app.router.add_route("*", "/getxml", self._xml)
        app.router.add_route("*", "/putxml", self._xml)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    def inventory_entry(self, password_ref: str) -> dict[str, object]:
        return {"host": "127.0.0.1", "port": self.port, "transport": "local",
                "username": "admin", "password": password_ref, "verify": f"pin:sha256:{self.pin}"}


@contextmanager
def hostile_device(workdir: Path, reason: str) -> Iterator[HostileDevice]:
    """A hostile device running in a thread of its own for the ``with`` block."""
    workdir.mkdir(parents=True, exist_ok=True)
    device = HostileDevice(workdir, reason)
    thread = threading.Thread(target=device._loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(device._start(), device._loop).result(30)
    try:
        yield device
    finally:
        if device._runner is not None:
            asyncio.run_coroutine_threadsafe(device._runner.cleanup(), device._loop).result(30)
        device._loop.call_soon_threadsafe(device._loop.stop)
        thread.join(10)
        device._loop.close()
