"""The JSON-RPC WebSocket transport against a small fake device written here with aiohttp.

The fake speaks the wire as the reference describes it (roomos-local-xapi.md §3): TLS, the
upgrade on /ws with Basic or ``auth-`` subprotocol login, JSON-RPC requests and replies. Each
test scripts what the device answers; the fake records every upgrade and request it saw.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import WSMsgType, web

from certfleet.fleet.errors import (
    AuthError,
    BadReplyError,
    CommandError,
    ParameterError,
    RateLimitedError,
    TimeoutError_,
    TlsVerifyError,
    TransportError,
    UnreachableError,
)
from certfleet.fleet.inventory import Device, load_inventory
from certfleet.fleet.runner import RunOptions
from certfleet.fleet.secrets import Secret, SecretRef
from certfleet.fleet.xapi._config import RetryPolicy, Timeouts, ssl_context_for
from certfleet.fleet.xapi.commands import ScepRequest, Xapi
from certfleet.fleet.xapi.connector import Connector
from certfleet.fleet.xapi.transport import Exchange
from certfleet.fleet.xapi.websocket import (
    JsonRpcCommandError,
    WebSocketTransport,
    auth_subprotocol,
)

PASSWORD = "s3cret-pw??>~~??"  # base64 of "admin:" + this has '+', '/' and padding
USER = "admin"
FAST = RetryPolicy(attempts=3, base=0.001, cap=0.002)
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

CA_SHOW = {
    "Details": [
        {"id": 1, "Fingerprint": "AB:CD:EF", "SubjectName": "/O=Example/CN=Root",
         "IssuerName": "/O=Example/CN=Root", "notAfter": "Jan  2 03:04:05 2031 GMT",
         "PublicKeySize": 2048},
    ]
}
SYSTEM_UNIT = {
    "ProductId": "Cisco Room Kit",
    "Hardware": {"Module": {"SerialNumber": "FOC123"}},
    "Software": {"DisplayName": "RoomOS 11.24", "Version": "ce11.24"},
    "Uptime": 4711,
}

Reply = dict[str, Any] | str | bytes | None
Behaviour = Callable[[dict[str, Any], "FakeDevice"], Awaitable[Reply] | Reply]

DROP = "<drop>"  # close the connection instead of answering
SILENT = None  # never answer


def result(request: dict[str, Any], value: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request["id"], "result": value}


def error(request: dict[str, Any], code: int, message: str, data: Any = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return {"jsonrpc": "2.0", "id": request["id"], "error": err}


def a_device_that_works(request: dict[str, Any], fake: FakeDevice) -> Reply:
    method, params = request["method"], request.get("params", {})
    if method == "xCommand/Security/Certificates/CA/Show":
        return result(request, CA_SHOW)
    if method == "xGet":
        if params["Path"] == ["Status", "SystemUnit"]:
            return result(request, SYSTEM_UNIT)
        return error(request, -32602, "No match on Path argument")
    if method == "xSet":
        return result(request, True)
    if method.startswith("xCommand/"):
        return result(request, {"status": "OK"})
    return error(request, -32601, "Method not found")


class FakeDevice:
    """A RoomOS WebSocket endpoint on 127.0.0.1 with real TLS."""

    def __init__(self, server_ssl: ssl.SSLContext) -> None:
        self.server_ssl = server_ssl
        self.behaviour: Behaviour = a_device_that_works
        self.upgrades: list[dict[str, str]] = []  # headers of every upgrade request
        self.requests: list[dict[str, Any]] = []  # every JSON-RPC request, in arrival order
        self.handshake_statuses: list[int] = []  # answer the next upgrades with these
        self.redirect: str | None = None
        self.connections = 0
        self.port = 0
        self._runner: web.AppRunner | None = None

    def methods(self) -> list[str]:
        return [r["method"] for r in self.requests]

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/ws", self._upgrade)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.server_ssl)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _upgrade(self, request: web.Request) -> web.StreamResponse:
        self.upgrades.append(dict(request.headers))
        if self.redirect:
            raise web.HTTPFound(self.redirect)
        if self.handshake_statuses:
            return web.Response(status=self.handshake_statuses.pop(0), text="no")
        protocols: tuple[str, ...] = ()
        offered = request.headers.get("Sec-WebSocket-Protocol", "")
        if offered:
            if offered != auth_subprotocol(USER, PASSWORD):
                return web.Response(status=403, text="Forbidden")
            protocols = (offered,)
        elif request.headers.get("Authorization") != "Basic " + base64.b64encode(
                f"{USER}:{PASSWORD}".encode()).decode():
            return web.Response(status=403, text="Forbidden")
        ws = web.WebSocketResponse(protocols=protocols, autoping=True)
        await ws.prepare(request)
        self.connections += 1
        tasks: set[asyncio.Task[None]] = set()
        async for message in ws:
            if message.type is not WSMsgType.TEXT:
                continue
            body = json.loads(message.data)
            self.requests.append(body)
            task = asyncio.create_task(self._answer(ws, body))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        for task in list(tasks):
            task.cancel()
        return ws

    async def _answer(self, ws: web.WebSocketResponse, request: dict[str, Any]) -> None:
        reply = self.behaviour(request, self)
        if asyncio.iscoroutine(reply):
            reply = await reply
        if reply is None:
            return
        if reply == DROP:
            await ws.close()
        elif isinstance(reply, bytes):
            await ws.send_bytes(reply)
        elif isinstance(reply, str):
            await ws.send_str(reply)
        else:
            await ws.send_str(json.dumps(reply))


@pytest.fixture(scope="module")
def tls() -> tuple[trustme.CA, trustme.LeafCert]:
    ca = trustme.CA()
    return ca, ca.issue_cert("127.0.0.1")


@pytest.fixture
async def fake(tls: tuple[trustme.CA, trustme.LeafCert]) -> AsyncIterator[FakeDevice]:
    _, leaf = tls
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(ctx)
    device = FakeDevice(ctx)
    await device.start()
    yield device
    await device.stop()


def inventory_device(tmp_path: Path, port: int, verify: str) -> Device:
    inv = tmp_path / "inv.yaml"
    inv.write_text(
        f"defaults: {{transport: websocket, username: {USER}, password: 'env:CF_WS_PW', "
        f"verify: '{verify}'}}\n"
        f"devices:\n  room-1: {{host: 127.0.0.1, port: {port}}}\n"
    )
    return load_inventory(inv).devices["room-1"]


@pytest.fixture
def ca_file(tmp_path: Path, tls: tuple[trustme.CA, trustme.LeafCert]) -> Path:
    path = tmp_path / "device-ca.pem"
    tls[0].cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
def device(tmp_path: Path, fake: FakeDevice, ca_file: Path) -> Device:
    return inventory_device(tmp_path, fake.port, f"ca:{ca_file}")


def make(
    device: Device,
    calls: list[Exchange] | None = None,
    *,
    read: float = 5.0,
    subprotocol: bool = False,
    retry: RetryPolicy = FAST,
) -> WebSocketTransport:
    return WebSocketTransport(
        device,
        Secret(PASSWORD),
        ssl_context=ssl_context_for(device.verify),
        timeouts=Timeouts(connect=5.0, read=read),
        retry=retry,
        recorder=calls.append if calls is not None else None,
        subprotocol_auth=subprotocol,
    )


# ------------------------------------------------------------------------ login


async def test_basic_auth_one_connection_for_every_call(fake: FakeDevice, device: Device) -> None:
    calls: list[Exchange] = []
    async with make(device, calls) as transport:
        xapi = Xapi(transport)
        cas = await xapi.ca_show()
        unit = await xapi.system_unit()
        await xapi.set_configuration(("Network", 1, "IEEE8021X", "Mode"), "On")
    assert len(fake.upgrades) == 1 and fake.connections == 1
    upgrade = fake.upgrades[0]
    expected = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert upgrade["Authorization"] == f"Basic {expected}"
    assert "Sec-WebSocket-Protocol" not in upgrade
    assert "Cookie" not in upgrade
    assert cas[0].fingerprint == "abcdef" and cas[0].key_size == "2048"
    assert cas[0].not_after is not None and cas[0].not_after.year == 2031
    assert (unit.product, unit.serial, unit.software) == ("Cisco Room Kit", "FOC123",
                                                          "RoomOS 11.24")
    assert fake.requests[0] == {"jsonrpc": "2.0", "id": fake.requests[0]["id"],
                                "method": "xCommand/Security/Certificates/CA/Show", "params": {}}
    assert fake.requests[2]["method"] == "xSet"
    assert fake.requests[2]["params"] == {"Path": ["Network", 1, "IEEE8021X", "Mode"],
                                          "Value": "On"}
    assert len({r["id"] for r in fake.requests}) == 3
    assert [(c.kind, c.path) for c in calls] == [
        ("session", "ws"),
        ("command", "Security/Certificates/CA/Show"),
        ("get", "Status/SystemUnit"),
        ("configure", "Network/1/IEEE8021X/Mode"),
        ("session", "ws/close"),
    ]
    assert all(c.ok for c in calls)
    assert calls[0].http_status == 101


async def test_subprotocol_login(fake: FakeDevice, device: Device) -> None:
    async with make(device, subprotocol=True) as transport:
        await Xapi(transport).ca_show()
    upgrade = fake.upgrades[0]
    assert "Authorization" not in upgrade
    offered = upgrade["Sec-WebSocket-Protocol"]
    standard = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert "+" in standard and "/" in standard and standard.endswith("=")  # the test is real
    assert offered == "auth-" + standard.replace("+", "-").replace("/", "_").rstrip("=")


@pytest.mark.parametrize("subprotocol", [False, True])
async def test_wrong_password_is_tried_exactly_once(
    fake: FakeDevice, device: Device, subprotocol: bool
) -> None:
    calls: list[Exchange] = []
    transport = WebSocketTransport(
        device, Secret("not-the-password"), ssl_context=ssl_context_for(device.verify),
        timeouts=Timeouts(), retry=FAST, recorder=calls.append, subprotocol_auth=subprotocol,
    )
    with pytest.raises(AuthError) as info:
        async with transport:
            pass
    assert len(fake.upgrades) == 1
    assert info.value.device == "room-1"
    assert "not retried" in str(info.value) and "403" in str(info.value)
    assert [(c.kind, c.http_status, c.attempts, c.ok) for c in calls] == [
        ("session", 403, 1, False)]
    assert "not-the-password" not in json.dumps([c.to_dict() for c in calls])


async def test_a_login_refused_on_reconnect_is_not_tried_again(fake: FakeDevice,
                                                                device: Device) -> None:
    # the password changed while the device rebooted: each later call must not log in again
    fake.behaviour = lambda request, fake: DROP

    async with make(device) as transport:
        fake.handshake_statuses = [403] * 10
        for _ in range(3):
            with pytest.raises(AuthError):
                await transport.get(("Status", "SystemUnit"))
    assert len(fake.upgrades) == 2  # the first login, and one refused reconnection


async def test_502_while_rebooting_is_retried(fake: FakeDevice, device: Device) -> None:
    fake.handshake_statuses = [502, 502]
    calls: list[Exchange] = []
    async with make(device, calls) as transport:
        await Xapi(transport).ca_show()
    assert len(fake.upgrades) == 3
    assert calls[0].attempts == 3 and calls[0].ok and calls[0].http_status == 101


async def test_503_rate_limit_gives_up_after_the_attempts(fake: FakeDevice,
                                                          device: Device) -> None:
    fake.handshake_statuses = [503] * 10
    with pytest.raises(RateLimitedError):
        async with make(device):
            pass
    assert len(fake.upgrades) == FAST.attempts


async def test_no_websocket_api_is_a_bad_reply_not_retried(fake: FakeDevice,
                                                           device: Device) -> None:
    fake.handshake_statuses = [404]
    with pytest.raises(BadReplyError, match="Websocket"):
        async with make(device):
            pass
    assert len(fake.upgrades) == 1


async def test_redirect_is_refused_not_followed(fake: FakeDevice, device: Device) -> None:
    fake.redirect = "https://127.0.0.2:1/elsewhere"
    with pytest.raises(BadReplyError, match="redirect"):
        async with make(device):
            pass
    assert len(fake.upgrades) == 1


async def test_device_down_is_unreachable(tmp_path: Path, ca_file: Path) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    device = inventory_device(tmp_path, port, f"ca:{ca_file}")
    calls: list[Exchange] = []
    with pytest.raises(UnreachableError) as info:
        async with make(device, calls):
            pass
    assert info.value.kind == "unreachable"
    assert calls[0].attempts == FAST.attempts


# ------------------------------------------------------------------------ TLS


async def test_pinned_certificate_is_checked_before_credentials_go_out(
    fake: FakeDevice, tmp_path: Path, tls: tuple[trustme.CA, trustme.LeafCert]
) -> None:
    der = ssl.PEM_cert_to_DER_cert(tls[1].cert_chain_pems[0].bytes().decode())
    good = inventory_device(tmp_path, fake.port, f"pin:sha256:{hashlib.sha256(der).hexdigest()}")
    async with make(good) as transport:
        await Xapi(transport).ca_show()
    assert len(fake.upgrades) == 1

    bad = inventory_device(tmp_path, fake.port, "pin:sha256:" + "ab" * 32)
    with pytest.raises(TlsVerifyError, match="pin"):
        async with make(bad):
            pass
    assert len(fake.upgrades) == 1  # the upgrade (with the password) was never sent


async def test_untrusted_certificate_is_refused(fake: FakeDevice, tmp_path: Path) -> None:
    device = inventory_device(tmp_path, fake.port, "system")
    with pytest.raises(TlsVerifyError):
        async with make(device):
            pass
    assert fake.upgrades == []


# ------------------------------------------------------------------------ calls


async def test_pipelined_calls_are_matched_by_id(fake: FakeDevice, device: Device) -> None:
    arrived: list[dict[str, Any]] = []
    all_in = asyncio.Event()

    async def reverse_order(request: dict[str, Any], fake: FakeDevice) -> Reply:
        arrived.append(request)
        if len(arrived) == 5:
            all_in.set()
        await all_in.wait()
        # answer the last request first
        await asyncio.sleep(0.01 * (5 - arrived.index(request)))
        return result(request, {"Echo": request["params"]["N"]})

    fake.behaviour = reverse_order
    calls: list[Exchange] = []
    async with make(device, calls) as transport:
        answers = await asyncio.gather(*(
            transport.command(("Test", "Echo"), {"N": str(n)}, idempotent=True) for n in range(5)
        ))
    assert answers == [{"Echo": str(n)} for n in range(5)]
    assert fake.connections == 1
    assert len(arrived) == 5


async def test_command_params_body_and_normalised_result(fake: FakeDevice,
                                                         device: Device) -> None:
    def answer(request: dict[str, Any], fake: FakeDevice) -> Reply:
        return result(request, {"status": "OK", "Details": {"id": "1", "Fingerprint": "aa"},
                                "Count": 2, "Flag": True, "Empty": None,
                                "Nested": {"List": [{"id": 1, "A": 1.0}, {"id": 2, "A": 2}]}})

    fake.behaviour = answer
    async with make(device) as transport:
        reply = await transport.command(
            ("Security", "Certificates", "Services", "Add"),
            {"PrivateKeyPassword": "key-pass-123", "SanDns": ("a.example", "b.example"),
             "Number": 3},
            PEM,
            idempotent=True,
        )
    assert reply == {"Details": [{"Fingerprint": "aa"}], "Count": "2", "Flag": "True",
                     "Empty": "", "Nested": {"List": [{"A": "1"}, {"A": "2"}]}}
    sent = fake.requests[0]
    assert sent["method"] == "xCommand/Security/Certificates/Services/Add"
    assert sent["params"] == {"PrivateKeyPassword": "key-pass-123",
                              "SanDns": ["a.example", "b.example"], "Number": 3, "body": PEM}


async def test_get_of_a_missing_node_is_none(fake: FakeDevice, device: Device) -> None:
    calls: list[Exchange] = []
    async with make(device, calls) as transport:
        assert await Xapi(transport).read_tree(("Status", "Network", 1, "Wifi")) is None
    assert fake.requests[0]["params"] == {"Path": ["Status", "Network", 1, "Wifi"]}
    assert calls[1].path == "Status/Network/1/Wifi" and calls[1].ok


@pytest.mark.parametrize(
    ("reply", "kind", "check"),
    [
        ((1, "Certificate rejected by policy", {"Cause": 21}), CommandError,
         lambda e: e.reason == "Certificate rejected by policy" and e.data == {"Cause": 21}
         and "Cause" in e.message),
        ((-32602, "Missing parameter: Fingerprint", None), ParameterError,
         lambda e: e.reason == "Missing parameter: Fingerprint"),
        ((-32601, "Method not found", None), CommandError,
         lambda e: e.reason == "Unknown command" and e.code == -32601),
        ((-31999, "Permission denied", None), AuthError,
         lambda e: "permission denied" in e.message and "admin" in e.message),
        ((-32603, "Internal error", None), CommandError,
         lambda e: "-32603" in e.message and e.code == -32603),
        ((-31998, "Too many subscriptions", None), CommandError, lambda e: "-31998" in e.message),
        ((-32700, "Parse error", None), BadReplyError, lambda e: "-32700" in e.message),
        ((-32600, "Invalid request", None), BadReplyError, lambda e: "-32600" in e.message),
        ((42, "Something new", None), CommandError, lambda e: "42" in e.message),
    ],
)
async def test_json_rpc_errors_map_to_fleet_errors(
    fake: FakeDevice, device: Device, reply: tuple[int, str, Any], kind: type[Exception],
    check: Callable[[Any], bool],
) -> None:
    code, message, data = reply
    fake.behaviour = lambda request, fake: error(request, code, message, data)
    async with make(device) as transport:
        with pytest.raises(kind) as info:
            await Xapi(transport).ca_delete("ab" * 20)
    exc: Any = info.value
    assert check(exc), exc
    assert exc.device == "room-1"
    assert exc.xpath == "Security/Certificates/CA/Delete"
    if code == 1:
        assert isinstance(exc, JsonRpcCommandError)


async def test_unknown_command_is_what_tolerant_callers_expect(fake: FakeDevice,
                                                               device: Device) -> None:
    fake.behaviour = lambda request, fake: error(request, -32601, "Method not found")
    async with make(device) as transport:
        assert await Xapi(transport).profiles_list(tolerant=True) == []


async def test_system_not_ready_is_retried(fake: FakeDevice, device: Device) -> None:
    def booting(request: dict[str, Any], fake: FakeDevice) -> Reply:
        if len(fake.requests) < 3:
            return error(request, -31997, "System not ready")
        return a_device_that_works(request, fake)

    fake.behaviour = booting
    async with make(device) as transport:
        assert len(await Xapi(transport).ca_show()) == 1
    assert len(fake.requests) == 3


async def test_timeout_then_the_connection_still_works(fake: FakeDevice, device: Device) -> None:
    def slow_first(request: dict[str, Any], fake: FakeDevice) -> Awaitable[Reply] | Reply:
        if len(fake.requests) == 1:
            async def late() -> Reply:
                await asyncio.sleep(0.5)  # after the client gave up: must be ignored
                return result(request, {"Details": []})
            return late()
        return a_device_that_works(request, fake)

    fake.behaviour = slow_first
    calls: list[Exchange] = []
    async with make(device, calls, read=0.2) as transport:
        xapi = Xapi(transport)
        with pytest.raises(TimeoutError_) as info:
            await xapi.ca_show()
        assert info.value.kind == "timeout"
        await asyncio.sleep(0.5)
        assert len(await xapi.ca_show()) == 1
    assert fake.connections == 1
    timed_out = calls[1]
    assert not timed_out.ok and "within 0.2s" in (timed_out.error or "")


async def test_dropped_connection_reconnects_for_an_idempotent_call(
    fake: FakeDevice, device: Device
) -> None:
    def drop_first(request: dict[str, Any], fake: FakeDevice) -> Reply:
        return DROP if len(fake.requests) == 1 else a_device_that_works(request, fake)

    fake.behaviour = drop_first
    calls: list[Exchange] = []
    async with make(device, calls) as transport:
        assert len(await Xapi(transport).ca_show()) == 1
    assert fake.connections == 2 and len(fake.upgrades) == 2
    assert fake.methods() == ["xCommand/Security/Certificates/CA/Show"] * 2
    assert [(c.kind, c.path) for c in calls] == [
        ("session", "ws"), ("session", "ws/reconnect"),
        ("command", "Security/Certificates/CA/Show"), ("session", "ws/close")]
    assert calls[2].attempts == 2 and calls[2].ok


async def test_a_write_whose_reply_was_lost_is_not_repeated(fake: FakeDevice,
                                                            device: Device) -> None:
    fake.behaviour = lambda request, fake: DROP
    async with make(device) as transport:
        with pytest.raises(TransportError, match="not repeated"):
            await Xapi(transport).ca_delete("ab" * 20)
    assert fake.methods() == ["xCommand/Security/Certificates/CA/Delete"]
    assert fake.connections == 1


async def test_reconnect_happens_once_per_call(fake: FakeDevice, device: Device) -> None:
    fake.behaviour = lambda request, fake: DROP
    async with make(device) as transport:
        with pytest.raises(TransportError, match="once"):
            await Xapi(transport).ca_show()
    assert fake.methods() == ["xCommand/Security/Certificates/CA/Show"] * 2


async def test_after_a_reboot_the_next_call_reconnects_even_a_write(
    fake: FakeDevice, device: Device
) -> None:
    # The device closed the socket between two calls: the write was never sent on the dead
    # connection, so sending it on a new one is safe.
    fake.behaviour = lambda request, fake: DROP if request["method"] == "xGet" else \
        a_device_that_works(request, fake)
    async with make(device) as transport:
        xapi = Xapi(transport)
        with pytest.raises(TransportError):
            await transport.get(("Status", "SystemUnit", "Uptime"))  # idempotent: 2 drops
        await asyncio.sleep(0.05)
        await xapi.ca_delete("ab" * 20)
    assert fake.methods()[-1] == "xCommand/Security/Certificates/CA/Delete"
    assert fake.methods().count("xCommand/Security/Certificates/CA/Delete") == 1


async def test_calls_in_flight_share_one_reconnection(fake: FakeDevice, device: Device) -> None:
    first_three = asyncio.Event()

    async def drop_when_three_arrived(request: dict[str, Any], fake: FakeDevice) -> Reply:
        if fake.connections == 1:
            if len(fake.requests) == 3:
                first_three.set()
            await first_three.wait()
            return DROP
        return a_device_that_works(request, fake)

    fake.behaviour = drop_when_three_arrived
    calls: list[Exchange] = []
    async with make(device, calls) as transport:
        xapi = Xapi(transport)
        results = await asyncio.gather(xapi.ca_show(), xapi.ca_show(), xapi.system_unit())
    assert len(results[0]) == 1 and results[2].serial == "FOC123"
    assert fake.connections == 2
    assert [c.path for c in calls if c.kind == "session"] == ["ws", "ws/reconnect", "ws/close"]


async def test_a_device_timeout_mid_call_closes_cleanly(fake: FakeDevice, device: Device) -> None:
    fake.behaviour = lambda request, fake: SILENT
    calls: list[Exchange] = []
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):  # the runner's per-device budget
            async with make(device, calls, read=30.0) as transport:
                await Xapi(transport).ca_show()
    assert [(c.kind, c.path) for c in calls][-1] == ("session", "ws/close")
    assert transport._session is None and transport._link is None
    leftovers = [t for t in asyncio.all_tasks() if "ws-reader" in t.get_name()]
    assert leftovers == []


@pytest.mark.parametrize(
    "garbage",
    ["this is not json", '{"jsonrpc": "2.0", "result": {}}', "[1, 2, 3]", b"\x00\x01binary",
     '{"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": "Parse error"}}'],
)
async def test_garbage_is_a_bad_reply(fake: FakeDevice, device: Device, garbage: str | bytes) -> None:
    fake.behaviour = lambda request, fake: garbage
    async with make(device, read=5.0) as transport:
        with pytest.raises(BadReplyError) as info:
            await Xapi(transport).ca_show()
    assert info.value.kind == "bad-reply"
    assert info.value.xpath == "Security/Certificates/CA/Show"


async def test_a_reply_without_result_or_error_is_a_bad_reply(fake: FakeDevice,
                                                              device: Device) -> None:
    fake.behaviour = lambda request, fake: {"jsonrpc": "2.0", "id": request["id"]}
    async with make(device) as transport:
        with pytest.raises(BadReplyError):
            await Xapi(transport).ca_show()


@pytest.mark.parametrize("depth", [500, 100_000])
async def test_a_reply_nested_too_deep_is_a_bad_reply(fake: FakeDevice, device: Device,
                                                      depth: int) -> None:
    deep = "[" * depth + "]" * depth
    fake.behaviour = lambda request, fake: (
        f'{{"jsonrpc":"2.0","id":{request["id"]},"result":{{"Details":{deep}}}}}')
    async with make(device) as transport:
        with pytest.raises(BadReplyError, match="nested"):
            await transport.command(("Security", "Certificates", "CA", "Show"))


async def test_notifications_are_ignored(fake: FakeDevice, device: Device) -> None:
    async def event_then_reply(request: dict[str, Any], fake: FakeDevice) -> Reply:
        return result(request, CA_SHOW)

    fake.behaviour = event_then_reply
    async with make(device) as transport:
        link = transport._link
        assert link is not None
        link.dispatch(json.dumps({"jsonrpc": "2.0", "method": "xFeedback/Event",
                              "params": {"Id": 1, "Status": {}}}))
        assert len(await Xapi(transport).ca_show()) == 1


# ------------------------------------------------------------------------ secrets


async def test_secrets_are_never_recorded(fake: FakeDevice, device: Device) -> None:
    calls: list[Exchange] = []
    fake.behaviour = lambda request, fake: result(request, {"CertFingerprint": "ab" * 20}) \
        if request["method"].endswith("Request") else a_device_that_works(request, fake)
    async with make(device, calls) as transport:
        xapi = Xapi(transport)
        await xapi.services_add(PEM + "-----BEGIN PRIVATE KEY-----\nMIIE\n"
                                "-----END PRIVATE KEY-----\n", Secret("key-pass-123"))
        await xapi.scep_request(ScepRequest(url="http://scep.example/", ca_fingerprint="ab" * 20,
                                            common_name="room-1",
                                            challenge=Secret("challenge-456")))
        await transport.configure(("Network", 1, "IEEE8021X", "Password"), "radius-789")
    recorded = json.dumps([c.to_dict() for c in calls])
    for secret in (PASSWORD, "key-pass-123", "challenge-456", "radius-789", "MIIE",
                   base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
                   auth_subprotocol(USER, PASSWORD)):
        assert secret not in recorded
    add = next(c for c in calls if c.path.endswith("Services/Add"))
    assert add.params == {"PrivateKeyPassword": "********"}
    assert add.body is not None and "1 PEM certificate + 1 private key" in add.body
    # but the device did get them
    assert fake.requests[0]["params"]["PrivateKeyPassword"] == "key-pass-123"


# ------------------------------------------------------------------------ wiring


async def test_connector_builds_websocket_transports_sharing_one_tls_context(
    tmp_path: Path, ca_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CF_WS_PW", PASSWORD)
    inv = tmp_path / "fleet.yaml"
    inv.write_text(
        f"defaults: {{transport: websocket, username: {USER}, password: 'env:CF_WS_PW', "
        f"verify: 'ca:{ca_file}'}}\n"
        "devices:\n  room-1: {host: 127.0.0.1, port: 1001}\n"
        "  room-2: {host: 127.0.0.1, port: 1002}\n"
        "  room-3: {host: 127.0.0.1, port: 1003, verify: insecure}\n"
    )
    devices = load_inventory(inv).devices
    ref = devices["room-1"].password
    assert isinstance(ref, SecretRef)
    connector = Connector({ref: ref.resolve()}, RunOptions())
    made = [connector.transport(d, lambda exchange: None) for d in devices.values()]
    assert all(isinstance(t, WebSocketTransport) and t.name == "websocket" for t in made)
    one, two, three = (t for t in made if isinstance(t, WebSocketTransport))
    assert one._ssl is two._ssl and one._ssl is not three._ssl
    assert one.url == "wss://127.0.0.1:1001/ws"
    await connector.aclose()


def test_ssl_contexts_share_one_context_for_all_pins(tmp_path: Path) -> None:
    a = inventory_device(tmp_path, 1, "pin:sha256:" + "ab" * 32).verify
    b = inventory_device(tmp_path, 1, "pin:sha256:" + "cd" * 32).verify
    assert ssl_context_for(a) is ssl_context_for(b)
