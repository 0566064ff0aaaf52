"""roomsim's WebSocket JSON-RPC API (`wss://host/ws`) over real sockets and verified TLS,
with a tiny JSON-RPC client written here (aiohttp + json, deliberately not fleet/ code),
plus an interop test driving it with Cisco's own client, `xows` (pyxows)."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import time
import xml.etree.ElementTree as ET
from typing import Any
from xml.sax.saxutils import escape

import aiohttp
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from certfleet.roomsim import SimFleet, jsonrpc
from certfleet.roomsim.limits import RateLimiter
from certfleet.roomsim.websocket import decode_auth_protocol

CA_ADD = "xCommand/Security/Certificates/CA/Add"
CA_SHOW = "xCommand/Security/Certificates/CA/Show"
SERVICES_SHOW = "xCommand/Security/Certificates/Services/Show"
VERSION = ["Status", "SystemUnit", "Software", "Version"]
DETAIL_FIELDS = {
    "id", "Fingerprint", "HashingAlgorithm", "IssuerName", "PublicKeySize", "SerialNumber",
    "SignatureAlgorithm", "SubjectName", "Version", "notAfter", "notBefore",
}  # fmt: skip


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def subprotocol(user: str, password: str) -> str:
    raw = base64.urlsafe_b64encode(f"{user}:{password}".encode()).decode()
    return "auth-" + raw.rstrip("=")


class Rpc:
    """One JSON-RPC WebSocket connection to a simulated device."""

    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse):
        self.session = session
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self._next_id = 0

    async def send(self, message: dict[str, Any] | str) -> None:
        await self.ws.send_str(message if isinstance(message, str) else json.dumps(message))

    async def receive(self, timeout: float = 5.0) -> dict[str, Any]:
        message = await self.ws.receive(timeout=timeout)
        assert message.type == aiohttp.WSMsgType.TEXT, message
        return json.loads(message.data)

    def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": self._next_id, "method": method}
        if params is not None:
            message["params"] = params
        return message

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one request; return its reply (notifications meanwhile go to `events`)."""
        request = self.request(method, params)
        await self.send(request)
        while True:
            reply = await self.receive()
            if "id" in reply and reply["id"] == request["id"]:
                assert reply["jsonrpc"] == "2.0"
                return reply
            self.events.append(reply)

    async def result(self, method: str, params: dict[str, Any] | None = None) -> Any:
        reply = await self.call(method, params)
        assert "error" not in reply, reply
        return reply["result"]

    async def error(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        reply = await self.call(method, params)
        assert "result" not in reply, reply
        return reply["error"]

    async def close(self) -> None:
        await self.ws.close()
        await self.session.close()


def context_for(sim: SimFleet) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(sim.ca_pem_path))


def url_for(sim: SimFleet, name: str = "room-001") -> str:
    return f"wss://127.0.0.1:{sim.devices[name].port}/ws"


async def connect(
    sim: SimFleet,
    name: str = "room-001",
    *,
    password: str | None = None,
    via: str = "basic",
) -> Rpc:
    """`via`: "basic" (Authorization header) or "subprotocol" (auth-… protocol)."""
    secret = sim.password if password is None else password
    session = aiohttp.ClientSession()
    kwargs: dict[str, Any] = {}
    if via == "basic":
        kwargs["headers"] = {"Authorization": basic("admin", secret)}
    else:
        kwargs["protocols"] = (subprotocol("admin", secret),)
    try:
        ws = await session.ws_connect(url_for(sim, name), ssl=context_for(sim), **kwargs)
    except BaseException:
        await session.close()
        raise
    return Rpc(session, ws)


async def handshake_status(sim: SimFleet, **kwargs: Any) -> int:
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        rpc = await connect(sim, **kwargs)
        await rpc.close()
    return caught.value.status


@pytest.fixture
async def rpc(sim):
    client = await connect(sim)
    yield client
    await client.close()


async def putxml(sim: SimFleet, body: str, name: str = "room-001") -> ET.Element:
    """roomsim's HTTP putxml with our own XML (Basic auth, TLS verified)."""
    url = f"https://127.0.0.1:{sim.devices[name].port}/putxml"
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            url,
            data=body.encode(),
            headers={"Content-Type": "text/xml", "Authorization": basic("admin", sim.password)},
            ssl=context_for(sim),
        ) as response,
    ):
        assert response.status == 200
        return ET.fromstring(await response.read())


def ca_show_xml() -> str:
    return "<Command><Security><Certificates><CA><Show/></CA></Certificates></Security></Command>"


def sha1(pem: str) -> str:
    return x509.load_pem_x509_certificate(pem.encode()).fingerprint(hashes.SHA1()).hex()


# ---------------------------------------------------------------- handshake and auth


async def test_basic_and_subprotocol_auth(sim):
    basic = await connect(sim)
    try:
        assert basic.ws.protocol is None
        assert await basic.result("xGet", {"Path": VERSION}) == "ce26.4.1.5.1234abcd"
    finally:
        await basic.close()

    offered = subprotocol("admin", sim.password)
    browser = await connect(sim, via="subprotocol")
    try:
        assert browser.ws.protocol == offered  # echoed in the handshake
        assert await browser.result("xGet", {"Path": VERSION}) == "ce26.4.1.5.1234abcd"
    finally:
        await browser.close()


def test_auth_subprotocol_decoding():
    # "??>" encodes to "Pz8-" in base64url and "Pz8+" in standard base64.
    for text in ("auth-YWRtaW46Pz8-", "auth-YWRtaW46Pz8+", "auth-YWRtaW46Pz8-==="):
        assert decode_auth_protocol(text) == ("admin", "??>")
    assert decode_auth_protocol(subprotocol("admin", "a:b")) == ("admin", "a:b")
    assert decode_auth_protocol("auth-bm9jb2xvbg") is None  # "nocolon"
    assert decode_auth_protocol("auth-!!!") is None


async def test_bad_credentials_403_and_lockout(sim_factory):
    sim = sim_factory(devices=1, lockout_seconds=0.6)
    await sim.start()
    try:
        device = sim.devices["room-001"]
        assert await handshake_status(sim, password="wrong") == 403
        assert await handshake_status(sim, password="wrong", via="subprotocol") == 403
        assert device.failed_logins == 2
        for _ in range(3):
            assert await handshake_status(sim, password="wrong") == 403
        # Five failures: locked out, even with the right password, on WS and HTTP alike.
        assert await handshake_status(sim) == 403
        assert await handshake_status(sim, via="subprotocol") == 403
        assert device.failed_logins == 7
        url = f"https://127.0.0.1:{device.port}/getxml?location=/Status/SystemUnit/Uptime"
        async with aiohttp.ClientSession() as session:
            auth = {"Authorization": basic("admin", sim.password)}
            async with session.get(url, headers=auth, ssl=context_for(sim)) as response:
                assert response.status == 401
            no_credentials = await session.get(url.replace("getxml", "ws"), ssl=context_for(sim))
            assert no_credentials.status == 403
        await asyncio.sleep(0.7)
        rpc = await connect(sim)
        await rpc.close()
    finally:
        await sim.stop()


async def test_session_cap_is_shared_with_http_sessions(sim):
    server = sim.servers["room-001"]
    server.sessions.max_total = 2
    first = await connect(sim)
    second = await connect(sim, via="subprotocol")
    try:
        assert await handshake_status(sim) == 503
    finally:
        await first.close()
    await asyncio.sleep(0.1)  # the server sees the close
    third = await connect(sim)
    await third.close()
    await second.close()


# ---------------------------------------------------------------- commands


async def test_ca_add_with_body_and_show_share_state_with_http(sim, rpc):
    pem_a = trustme.CA().cert_pem.bytes().decode()
    pem_b = trustme.CA(organization_name="Example Corp").cert_pem.bytes().decode()

    assert await rpc.result(CA_ADD, {"body": pem_a}) == {}
    shown = await rpc.result(CA_SHOW)
    assert shown["Format"] == "Text"
    assert [d["id"] for d in shown["Details"]] == [1]
    first = shown["Details"][0]
    assert first["Fingerprint"] == sha1(pem_a)
    assert set(first) == DETAIL_FIELDS - {"UsedFor"}

    # HTTP sees what the WebSocket added, and the other way round.
    http = await putxml(sim, ca_show_xml())
    assert [d.findtext("Fingerprint") for d in http.iter("Details")] == [sha1(pem_a)]
    ok = await putxml(
        sim,
        "<Command><Security><Certificates><CA><Add><body>"
        f"{escape(pem_b)}</body></Add></CA></Certificates></Security></Command>",
    )
    assert ok.find("CAAddResult").get("status") == "OK"
    shown = await rpc.result(CA_SHOW, {"Format": "PEM"})
    assert [d["Fingerprint"] for d in shown["Details"]] == [sha1(pem_a), sha1(pem_b)]
    assert shown["Details"][1]["PEM"].startswith("-----BEGIN CERTIFICATE-----")
    assert shown["Format"] == "PEM"


async def test_services_show_details_shape_matches_xml(sim, rpc):
    shown = await rpc.result(SERVICES_SHOW)
    assert set(shown) == {"Details", "Format"} and shown["Format"] == "Text"
    details = shown["Details"]
    assert [d["id"] for d in details] == list(range(1, len(details) + 1))
    https = next(d for d in details if d["UsedFor"])
    assert set(https) == DETAIL_FIELDS | {"UsedFor"}
    assert isinstance(https["PublicKeySize"], int) and https["Version"] == 3
    assert len(https["Fingerprint"]) == 40

    xml = await putxml(
        sim,
        "<Command><Security><Certificates><Services><Show/></Services></Certificates>"
        "</Security></Command>",
    )
    xml_details = xml.findall("ServicesShowResult/Details")
    assert len(xml_details) == len(details)
    for element, item in zip(xml_details, details, strict=True):
        assert int(element.get("item")) == item["id"]
        for child in element:
            assert str(item[child.tag]) == (child.text or ""), child.tag

    sha256 = await rpc.result(SERVICES_SHOW, {"FingerprintAlgorithm": "SHA-256"})
    assert len(sha256["Details"][0]["Fingerprint"]) == 64


async def test_array_params_numbers_and_wifi(rpc):
    configured = await rpc.result(
        "xCommand/Network/Wifi/Configure",
        {"SSID": "corp", "Type": "Wpa2-psk", "Password": 12345678},
    )
    assert configured == {"ProfileID": 1}
    listed = await rpc.result("xCommand/Network/Wifi/List")
    assert listed["Profile"][0]["SSID"] == "corp" and listed["Profile"][0]["id"] == 1
    assert await rpc.result("xCommand/Network/Wifi/Delete", {"ProfileID": 1}) == {}
    # Array params reach the registry as arrays: too many values is its ParameterError.
    error = await rpc.error(
        "xCommand/Security/Certificates/Services/Enrollment/SCEP/Request",
        {
            "URL": "http://127.0.0.1:9/scep",
            "Fingerprint": "00" * 20,
            "CommonName": "room",
            "SanDns": ["a", "b", "c", "d", "e", "f"],
        },
    )
    assert error["code"] == -32602 and "at most 5" in error["message"]


# ---------------------------------------------------------------- xGet, xQuery, xSet


async def test_xget_status_and_configuration_with_indexes(sim, rpc):
    device = sim.devices["room-001"]
    assert await rpc.result("xGet", {"Path": VERSION}) == device.software_version
    uptime = await rpc.result("xGet", {"Path": ["Status", "SystemUnit", "Uptime"]})
    assert isinstance(uptime, int) and uptime >= 0
    software = await rpc.result("xGet", {"Path": ["Status", "SystemUnit", "Software"]})
    assert software["DisplayName"] == "RoomOS 26.4.1.5 1234abcd"
    assert software["Version"] == device.software_version  # not an integer: stays a string

    mode = ["Configuration", "Network", 1, "IEEE8021X", "Mode"]
    assert await rpc.result("xGet", {"Path": mode}) == "Off"
    loose = ["configuration", "Network", "1", "IEEE8021X", "Mode"]  # any case, index as text
    assert await rpc.result("xGet", {"Path": loose}) == "Off"
    network = await rpc.result("xGet", {"Path": ["Configuration", "Network"]})
    assert network[0]["id"] == 1 and network[0]["IEEE8021X"]["Eap"]["Tls"] == "On"
    assert network[0]["IEEE8021X"]["Password"] == ""  # hidden, as in getxml
    status = await rpc.result("xGet", {"Path": ["Status", "Network", 1, "IEEE8021X", "Status"]})
    assert status == "Off"

    for bad in (
        ["Status", "NoSuchThing"],
        ["Configuration", "Network", 2, "IEEE8021X", "Mode"],
        ["Bogus"],
    ):
        error = await rpc.error("xGet", {"Path": bad})
        assert error == {"code": -32602, "message": "No match on Path argument"}, bad
    for bad_path in ([], "Status/SystemUnit", ["Status", True], None):
        assert (await rpc.error("xGet", {"Path": bad_path}))["code"] == -32602


async def test_xquery_wildcard(rpc):
    names = await rpc.result("xQuery", {"Query": ["Status", "**", "DisplayName"]})
    software = {"DisplayName": "RoomOS 26.4.1.5 1234abcd"}
    assert names == {"Status": {"SystemUnit": {"Software": software}}}
    tls = await rpc.result("xQuery", {"Query": ["**", "Tls"]})
    assert tls == {"Configuration": {"Network": [{"id": 1, "IEEE8021X": {"Eap": {"Tls": "On"}}}]}}
    assert await rpc.result("xQuery", {"Query": ["Status", "Nothing", "**"]}) == {}


async def test_xset_and_illegal_value(sim, rpc):
    device = sim.devices["room-001"]
    path = ["Configuration", "Network", 1, "IEEE8021X", "Mode"]
    assert await rpc.result("xSet", {"Path": path, "Value": "On"}) is True
    assert device.config["Network[1]/IEEE8021X/Mode"] == "On"
    key_size = ["Configuration", "Security", "Enrollment", "KeySize"]
    assert await rpc.result("xSet", {"Path": key_size, "Value": 4096}) is True
    xml = await putxml(
        sim,
        "<Configuration><Network item='1'><IEEE8021X><Mode>Off</Mode></IEEE8021X></Network>"
        "</Configuration>",
    )
    assert xml.find("Success") is not None
    assert await rpc.result("xGet", {"Path": path}) == "Off"  # putxml's change is seen

    illegal = await rpc.error("xSet", {"Path": path, "Value": "Maybe"})
    assert illegal == {
        "code": 1,
        "message": "Illegal value",
        "data": {"Cause": 27, "Reason": "Illegal value"},
    }
    assert device.config["Network[1]/IEEE8021X/Mode"] == "Off"
    for bad in (
        {"Path": ["Configuration", "Network", 1, "IEEE8021X", "Nope"], "Value": "On"},
        {"Path": ["Status", "SystemUnit", "Uptime"], "Value": "1"},
        {"Path": path},
        {"Path": path, "Value": True},
    ):
        assert (await rpc.error("xSet", bad))["code"] == -32602, bad


# ---------------------------------------------------------------- errors


async def test_error_codes(rpc):
    assert await rpc.error("xCommand/No/Such/Command") == {
        "code": -32601,
        "message": "Method not found",
    }
    assert (await rpc.error("xDoesNotExist"))["code"] == -32601
    assert (await rpc.error("xCommand/Security/Certificates"))["code"] == -32601

    missing = await rpc.error("xCommand/Security/Certificates/CA/Delete")
    assert missing == {"code": -32602, "message": "Missing required parameter: Fingerprint"}
    for params, text in (
        ({"Nope": "1"}, "Unknown parameter: Nope"),
        ({"Fingerprint": True}, "give a string or a number"),
        ({"Fingerprint": ["a", "b"]}, "not an array"),
    ):
        error = await rpc.error("xCommand/Security/Certificates/CA/Delete", params)
        assert error["code"] == -32602 and text in error["message"], error
    literal = await rpc.error(CA_SHOW, {"Format": "XML"})
    assert literal["code"] == -32602 and "not one of PEM, Text" in literal["message"]

    failed = await rpc.error("xCommand/Security/Certificates/CA/Delete", {"Fingerprint": "ab"})
    reason = "No CA certificate with fingerprint 'ab'"
    assert failed == {"code": 1, "message": reason, "data": {"Cause": 1, "Reason": reason}}
    not_a_cert = await rpc.error(CA_ADD, {"body": "hello"})
    assert not_a_cert["code"] == 1 and "BEGIN CERTIFICATE" in not_a_cert["message"]

    await rpc.send("{not json")
    assert await rpc.receive() == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32700, "message": "Parse error"},
    }
    await rpc.send("[]")
    assert (await rpc.receive())["error"]["code"] == -32600
    await rpc.send({"jsonrpc": "2.0", "id": "no-method"})
    reply = await rpc.receive()
    assert reply["id"] == "no-method" and reply["error"]["code"] == -32600
    await rpc.send({"id": 7, "method": "xGet", "params": {"Path": VERSION}})  # no "jsonrpc"
    assert (await rpc.receive())["error"]["code"] == -32600
    await rpc.send({"jsonrpc": "2.0", "id": 8, "method": "xGet", "params": ["Status"]})
    assert (await rpc.receive())["error"]["code"] == -32602
    # A notification (no id) runs but is never answered; the next request still is.
    await rpc.send({"jsonrpc": "2.0", "method": "xGet", "params": {"Path": VERSION}})
    assert await rpc.result("xGet", {"Path": VERSION}) == "ce26.4.1.5.1234abcd"


async def test_pipelined_requests_answered_by_id_in_order(sim, rpc):
    await sim.set_fault("room-001", latency=0.3)
    pem = trustme.CA().cert_pem.bytes().decode()
    requests = [
        {"jsonrpc": "2.0", "id": "add", "method": CA_ADD, "params": {"body": pem}},
        {"jsonrpc": "2.0", "id": 2, "method": CA_SHOW},
        {"jsonrpc": "2.0", "id": 3, "method": "xGet", "params": {"Path": VERSION}},
        {"jsonrpc": "2.0", "id": 4.5, "method": "xCommand/Nope"},
        {"jsonrpc": "2.0", "id": "s", "method": SERVICES_SHOW},
    ]
    started = time.monotonic()
    await asyncio.gather(*(rpc.send(r) for r in requests))
    replies = {}
    for _ in requests:
        reply = await rpc.receive()
        replies[reply["id"]] = reply
    elapsed = time.monotonic() - started
    assert set(replies) == {"add", 2, 3, 4.5, "s"}
    assert elapsed < 1.0  # five requests with 0.3 s latency each ran side by side
    assert replies["add"]["result"] == {}
    assert [d["Fingerprint"] for d in replies[2]["result"]["Details"]] == [sha1(pem)]
    assert replies[3]["result"] == "ce26.4.1.5.1234abcd"
    assert replies[4.5]["error"]["code"] == -32601
    assert "Details" in replies["s"]["result"]


async def test_message_rate_limit_full_queue(sim):
    # 20/s with a burst of 1 and two places in the queue (the real queue holds 90).
    sim.servers["room-001"].session_limiter = RateLimiter(20.0, 2, burst=1)
    rpc = await connect(sim)
    try:
        requests = [rpc.request("xGet", {"Path": VERSION}) for _ in range(6)]
        for request in requests:
            await rpc.send(request)
        replies = [await rpc.receive() for _ in requests]
        assert sorted(r["id"] for r in replies) == [r["id"] for r in requests]
        refused = [r for r in replies if "error" in r]
        assert len(refused) >= 2
        assert all(r["error"] == {"code": -32603, "message": "Too many requests"} for r in refused)
        assert sum("result" in r for r in replies) >= 3  # one at once, two queued
    finally:
        await rpc.close()


# ---------------------------------------------------------------- feedback


async def test_feedback_on_configuration_changes(sim, rpc):
    query = ["Configuration", "Network", 1, "IEEE8021X"]
    params = {"Query": query, "NotifyCurrentValue": True}
    subscribed = await rpc.result("xFeedback/Subscribe", params)
    assert subscribed == {"Id": 1}
    current = await rpc.receive()
    assert current["method"] == "xFeedback/Event" and "id" not in current
    assert current["params"]["Id"] == 1
    assert current["params"]["Configuration"]["Network"][0]["IEEE8021X"]["Mode"] == "Off"

    await rpc.result("xSet", {"Path": [*query, "Mode"], "Value": "On"})
    event = await rpc.receive()
    assert event["params"] == {
        "Id": 1,
        "Configuration": {"Network": [{"id": 1, "IEEE8021X": {"Mode": "On"}}]},
    }
    await putxml(
        sim,
        "<Configuration><Network><IEEE8021X><Identity>room</Identity></IEEE8021X></Network>"
        "<Security><Enrollment><KeySize>3072</KeySize></Enrollment></Security></Configuration>",
    )
    event = await rpc.receive()
    assert event["params"]["Configuration"] == {
        "Network": [{"id": 1, "IEEE8021X": {"Identity": "room"}}]
    }
    assert await rpc.result("xFeedback/Unsubscribe", {"Id": 1}) is True
    assert (await rpc.error("xFeedback/Unsubscribe", {"Id": 1}))["code"] == -32602
    await rpc.result("xSet", {"Path": [*query, "Mode"], "Value": "Off"})
    with pytest.raises(asyncio.TimeoutError):
        await rpc.ws.receive(timeout=0.2)
    assert (await rpc.error("xFeedback/Subscribe", {"Query": ["Nope"]}))["code"] == -32602


# ---------------------------------------------------------------- faults, reboot


async def test_faults_on_websocket(sim):
    await sim.set_fault("room-001", http_status=502)
    assert await handshake_status(sim) == 502
    await sim.clear_faults("room-001")

    rpc = await connect(sim)
    try:
        await sim.set_fault("room-001", garbage=True)
        await rpc.send(rpc.request("xGet", {"Path": VERSION}))
        garbage = await rpc.ws.receive(timeout=5)
        assert garbage.type == aiohttp.WSMsgType.TEXT
        with pytest.raises(ValueError):
            json.loads(garbage.data)
        await sim.set_fault("room-001", garbage=False, drop=True)
        await rpc.send(rpc.request("xGet", {"Path": VERSION}))
        closed = await rpc.ws.receive(timeout=5)
        assert closed.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
    finally:
        await rpc.close()
        await sim.clear_faults("room-001")


async def test_offline_and_reboot_close_sockets(sim):
    rpc = await connect(sim)
    try:
        await sim.set_fault("room-001", offline=True)
        message = await rpc.ws.receive(timeout=5)
        assert message.type == aiohttp.WSMsgType.CLOSE and message.data == 1001
        with pytest.raises(aiohttp.ClientConnectorError):
            await connect(sim)
    finally:
        await rpc.close()
    await sim.clear_faults("room-001")

    rpc = await connect(sim)
    try:
        reboot = sim.servers["room-001"].boot("Restart")
        message = await rpc.ws.receive(timeout=5)
        assert message.type == aiohttp.WSMsgType.CLOSE and message.data == 1001
        with pytest.raises(aiohttp.ClientConnectorError):
            await connect(sim)  # refused while rebooting
        await reboot
    finally:
        await rpc.close()

    rpc = await connect(sim)  # back up
    try:
        assert await rpc.result("xCommand/SystemUnit/Boot") == {}  # answered, then reboots
        message = await rpc.ws.receive(timeout=5)
        assert message.type == aiohttp.WSMsgType.CLOSE
    finally:
        await rpc.close()
    deadline = time.monotonic() + 5.0
    while True:  # the device comes back after its reboot
        try:
            back = await connect(sim)
        except aiohttp.ClientConnectorError:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
            continue
        await back.close()
        break


# ---------------------------------------------------------------- pure protocol


def test_parse_request_and_json_view():
    request = jsonrpc.parse_request(b'{"jsonrpc":"2.0","id":"a","method":"xGet"}')
    assert (request.id, request.method, request.params, request.notification) == (
        "a",
        "xGet",
        {},
        False,
    )
    assert jsonrpc.parse_request('{"jsonrpc":"2.0","method":"x"}').notification
    for bad, code in (
        ("nope", -32700),
        ("1", -32600),
        ('{"jsonrpc":"2.0","id":true,"method":"x"}', -32600),
        ('{"jsonrpc":"2.0","id":1,"method":7}', -32600),
    ):
        with pytest.raises(jsonrpc.RpcError) as caught:
            jsonrpc.parse_request(bad)
        assert caught.value.code == code, bad

    result = ET.fromstring(
        '<XResult status="OK"><Details item="1"><Version>3</Version><Name>a</Name></Details>'
        '<Details item="2"><Version>x</Version><Name/></Details><Format>Text</Format></XResult>'
    )
    assert jsonrpc.command_result(result) == {
        "Details": [{"id": 1, "Version": 3, "Name": "a"}, {"id": 2, "Version": "x", "Name": ""}],
        "Format": "Text",
    }
    assert jsonrpc.command_result(ET.fromstring('<AddResult status="OK"/>')) == {}


# ---------------------------------------------------------------- interop: Cisco's xows


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # xows uses aiohttp's BasicAuth
async def test_interop_with_cisco_xows(sim):
    """Cisco's own Python client (PyPI `xows`, pyxows 1.0.5) against roomsim's /ws.
    xows always disables TLS verification; the server is on 127.0.0.1."""
    xows = pytest.importorskip(
        "xows", reason="Cisco's xows client is not installed (pip install xows)"
    )
    pem = trustme.CA(organization_name="Interop CA").cert_pem.bytes().decode()
    async with xows.XoWSClient(url_for(sim), username="admin", password=sim.password) as client:
        assert await client.xGet(VERSION) == "ce26.4.1.5.1234abcd"
        services = await client.xCommand(["Security", "Certificates", "Services", "Show"])
        assert services["Format"] == "Text" and services["Details"][0]["Fingerprint"]
        added = await client.xCommand(["Security", "Certificates", "CA", "Add"], body=pem)
        assert added == {}
        with pytest.raises(xows.CommandError):
            await client.xCommand(["Security", "Certificates", "CA", "Delete"], Fingerprint="0")
        with pytest.raises(xows.MethodNotFound):
            await client.xCommand(["No", "Such"])
        assert await client.xSet(["Configuration", "Security", "Enrollment", "KeySize"], 3072)

    with pytest.raises(xows.AuthenticationFailure):
        async with xows.XoWSClient(url_for(sim), username="admin", password="wrong"):
            pass

    shown = await putxml(sim, ca_show_xml())
    assert sha1(pem) in [d.findtext("Fingerprint") for d in shown.iter("Details")]
    assert sim.devices["room-001"].config["Security/Enrollment/KeySize"] == "3072"
