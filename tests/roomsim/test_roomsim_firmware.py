"""One RoomOS release and product per simulated device: what each refuses, how, over every API,
and the request log that proves what a device was sent."""

from __future__ import annotations

import ssl
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_roomsim_websocket import connect

from certfleet.fleet.xapi.releases import SUPPORTED, model_for, product_code
from certfleet.roomsim import SimFleet, SimFleetThread
from certfleet.roomsim.firmware import ALL_PRODUCTS, MIX, check_choice, firmware_for

WIFI = "<Command><Network><Wifi><Configure command=\"True\">{}</Configure></Wifi></Network></Command>"
PROFILES = (
    "<Command><Security><Certificates><Services><Enrollment><SCEP><Profiles>"
    "<Set command=\"True\">{}</Set></Profiles></SCEP></Enrollment></Services></Certificates>"
    "</Security></Command>"
)
SCEP_REQUEST = (
    "<Command><Security><Certificates><Services><Enrollment><SCEP><Request command=\"True\">"
    "<URL>http://127.0.0.1:9/scep</URL><Fingerprint>{fp}</Fingerprint>"
    "<CommonName>room</CommonName></Request></SCEP></Enrollment></Services></Certificates>"
    "</Security></Command>"
)
FP = "ab" * 20
SYNC = "Peripherals/Security/Certificates/SyncToPeripherals/Enabled"


class Device:
    """A script talking to one simulated device over HTTPS (not fleet/ code)."""

    def __init__(self, sim: SimFleet, name: str) -> None:
        context = ssl.create_default_context(cafile=str(sim.ca_pem_path))
        self.client = httpx.AsyncClient(
            base_url=f"https://127.0.0.1:{sim.devices[name].port}", verify=context,
            auth=("admin", sim.password), timeout=10.0)

    async def putxml(self, body: str) -> Any:
        response = await self.client.post("/putxml", content=body,
                                          headers={"Content-Type": "text/xml"})
        assert response.status_code == 200, response.text
        return ET.fromstring(response.content)

    async def getxml(self, location: str) -> Any:
        response = await self.client.get("/getxml", params={"location": location})
        assert response.status_code == 200, response.text
        return ET.fromstring(response.content)

    async def aclose(self) -> None:
        await self.client.aclose()


@pytest.fixture
async def fleet(sim_factory: Callable[..., SimFleet]) -> Any:
    sim = sim_factory(devices=4, cloud=True, device_firmware={
        "room-001": "11.24.1", "room-002": "26.1.1", "room-003": "10.19.4.2",
        "room-004": "11.24.1:vecchio"})
    await sim.start()
    clients: list[Device] = []

    def device(name: str) -> Device:
        clients.append(Device(sim, name))
        return clients[-1]

    yield sim, device
    for client in clients:
        await client.aclose()
    await sim.stop()


def params(**values: str) -> str:
    return "".join(f"<{k}>{v}</{k}>" for k, v in values.items())


async def test_connect_and_challenge_refused_on_11_24_1_accepted_on_26_1_1(fleet):
    sim, device = fleet
    old, new = device("room-001"), device("room-002")
    wifi = WIFI.format(params(SSID="corp", Type="Wpa2-eap-tls", Connect="Auto"))
    refused = (await old.putxml(wifi)).find("WifiConfigureResult")
    assert refused.get("status") == "ParameterError"
    assert "Connect" in refused.findtext("Reason")
    assert sim.devices["room-001"].wifi == []  # nothing half-done
    assert (await new.putxml(wifi)).find("WifiConfigureResult").get("status") == "OK"
    # without Connect an 11.24.1 device joins at once (the release has no "Later")
    plain = WIFI.format(params(SSID="corp", Type="Wpa2-eap-tls"))
    assert (await old.putxml(plain)).find("WifiConfigureResult").get("status") == "OK"
    assert sim.devices["room-001"].wifi[0].connect == "Auto"

    challenge = PROFILES.format(params(Fingerprint=FP, URL="http://127.0.0.1:9/scep",
                                       ChallengePassword="s3cret"))
    refused = (await old.putxml(challenge)).find("ProfilesSetResult")
    assert refused.get("status") == "ParameterError"
    assert "ChallengePassword" in refused.findtext("Reason")
    assert sim.devices["room-001"].profiles == []
    assert (await new.putxml(challenge)).find("ProfilesSetResult").get("status") == "OK"
    without = PROFILES.format(params(Fingerprint=FP, URL="http://127.0.0.1:9/scep"))
    assert (await old.putxml(without)).find("ProfilesSetResult").get("status") == "OK"


async def test_enterprise_tls_needs_11_27_and_9_15_has_its_own_names(sim_factory):
    sim = sim_factory(devices=2, device_firmware={"room-001": "11.24.1",
                                                  "room-002": "9.15.17.4:hopen"})
    await sim.start()
    old, oldest = Device(sim, "room-001"), Device(sim, "room-002")
    try:
        reply = await old.putxml(WIFI.format(params(SSID="c", Type="Enterprise-Tls")))
        result = reply.find("WifiConfigureResult")
        assert result.get("status") == "ParameterError" and "Type" in result.findtext("Reason")
        reply = await oldest.putxml(WIFI.format(params(SSID="c", Type="Wpa2-eap-tls")))
        assert reply.find("WifiConfigureResult").get("status") == "ParameterError"
        reply = await oldest.putxml(WIFI.format(params(SSID="c", Type="Wpa-eap-tls")))
        assert reply.find("WifiConfigureResult").get("status") == "OK"
        status = await oldest.getxml("/Status/Network/1/Wifi/Status")
        assert status.findtext("Network/Wifi/Status") == "AuthFailed"  # no 802.1X cert yet
    finally:
        await old.aclose()
        await oldest.aclose()
        await sim.stop()


async def test_product_without_wifi_or_sync(fleet):
    sim, device = fleet
    navigator = device("room-004")
    unit = await navigator.getxml("/Status/SystemUnit")
    assert unit.findtext("SystemUnit/ProductId") == "Cisco Room Navigator"
    assert unit.findtext("SystemUnit/Hardware/HasWifi") == "False"
    for location in ("/Status/Network/1/Wifi", "/Status/Network/1/Wifi/Status",
                     "/Configuration/" + SYNC, "/Configuration/Peripherals"):
        empty = await navigator.getxml(location)
        assert empty.tag == "EmptyResult", location
        assert empty.get("version") == sim.devices["room-004"].software_version
    network = await navigator.getxml("/Status/Network/1")
    assert network.find("Network/Wifi") is None and network.find("Network/Ethernet") is not None

    reply = await navigator.putxml(WIFI.format(params(SSID="corp", Type="Wpa2-eap-tls")))
    assert reply.tag == "ActionError"
    assert reply.findtext("Reason") == "No action detected in document"
    reply = await navigator.putxml(
        "<Configuration><Peripherals><Security><Certificates><SyncToPeripherals><Enabled>False"
        "</Enabled></SyncToPeripherals></Certificates></Security></Peripherals></Configuration>")
    assert reply.get("status") == "Error"
    assert reply.findtext("Reason") == "No match on address expression"
    # a product that has both answers them
    desk = await device("room-001").getxml("/Configuration/" + SYNC)
    assert desk.tag == "Configuration" and desk.findtext(SYNC) == "True"


async def test_scep_request_refused_before_release_11(fleet):
    sim, device = fleet
    reply = await device("room-003").putxml(SCEP_REQUEST.format(fp=FP))
    assert reply.tag == "ActionError"
    assert reply.findtext("Reason") == "No action detected in document"
    listed = await device("room-003").putxml(
        "<Command><Security><Certificates><Services><Enrollment><Profiles><List command=\"True\"/>"
        "</Profiles></Enrollment></Services></Certificates></Security></Command>")
    assert listed.tag == "ActionError"
    assert sim.devices["room-003"].profiles == []
    assert (await device("room-003").getxml("/Status/Network/1/IEEE8021X")).tag == "EmptyResult"


async def test_jsonrpc_and_cloud_refuse_the_same(fleet):
    sim, _ = fleet
    rpc = await connect(sim, "room-001")
    try:
        error = await rpc.error("xCommand/Network/Wifi/Configure",
                                {"SSID": "c", "Type": "Wpa2-eap-tls", "Connect": "Auto"})
        assert error["code"] == -32602 and "Connect" in error["message"]
        error = await rpc.error("xCommand/Security/Certificates/Services/Enrollment/SCEP/"
                                "Profiles/Set", {"Fingerprint": FP, "URL": "http://127.0.0.1:9/",
                                                 "ChallengePassword": "x"})
        assert error["code"] == -32602 and "ChallengePassword" in error["message"]
    finally:
        await rpc.close()
    rpc = await connect(sim, "room-004")
    try:
        error = await rpc.error("xCommand/Network/Wifi/Configure", {"SSID": "c",
                                                                     "Type": "Wpa2-eap-tls"})
        assert error["code"] == -32601
        error = await rpc.error("xGet", {"Path": ["Status", "Network", 1, "Wifi", "Status"]})
        assert error == {"code": -32602, "message": "No match on Path argument"}
        error = await rpc.error("xSet", {"Path": ["Configuration", *SYNC.split("/")],
                                         "Value": "False"})
        assert error == {"code": -32602, "message": "No match on Path argument"}
    finally:
        await rpc.close()

    headers = {"Authorization": f"Bearer {sim.cloud_token}"}
    context = ssl.create_default_context(cafile=str(sim.ca_pem_path))
    async with httpx.AsyncClient(base_url=sim.cloud_url, verify=context, headers=headers) as web:
        old = sim.cloud_device_id("room-001")
        answer = await web.post("/v1/xapi/command/Network.Wifi.Configure", json={
            "deviceId": old, "arguments": {"SSID": "c", "Type": "Wpa2-eap-tls",
                                           "Connect": "Auto"}})
        assert answer.status_code == 400 and "Connect" in answer.json()["message"]
        navigator = sim.cloud_device_id("room-004")
        answer = await web.post("/v1/xapi/command/Network.Wifi.Configure", json={
            "deviceId": navigator, "arguments": {"SSID": "c", "Type": "Wpa2-eap-tls"}})
        assert answer.status_code == 400 and "not supported" in answer.json()["message"]
        answer = await web.get("/v1/xapi/status", params={
            "deviceId": navigator, "name": "Network[1].Wifi.Status"})
        assert answer.status_code == 200 and answer.json()["result"] == {}
        answer = await web.patch(
            "/v1/deviceConfigurations", params={"deviceId": navigator},
            json=[{"op": "replace", "value": "False",
                   "path": "/Peripherals.Security.Certificates.SyncToPeripherals.Enabled"
                           "/sources/configured/value"}],
            headers={"Content-Type": "application/json-patch+json"})
        assert answer.status_code == 400


async def test_request_log_and_violations(fleet):
    sim, device = fleet
    assert sim.violations() == []
    desk = device("room-002")  # 26.1.1: everything below exists
    await desk.putxml(WIFI.format(params(SSID="corp", Type="Enterprise-Tls", Connect="Auto")))
    assert sim.violations() == []
    logged = list(sim.devices["room-002"].requests)
    assert logged[-1].path == "Network/Wifi/Configure"
    assert ("Connect", "Auto") in logged[-1].params and logged[-1].via == "putxml"

    await device("room-001").putxml(
        WIFI.format(params(SSID="corp", Type="Enterprise-Tls", Connect="Auto")))
    await device("room-003").putxml(SCEP_REQUEST.format(fp=FP))
    await device("room-004").putxml(
        "<Configuration><Peripherals><Security><Certificates><SyncToPeripherals><Enabled>False"
        "</Enabled></SyncToPeripherals></Certificates></Security></Peripherals></Configuration>")
    found = sim.violations()
    assert any(v.startswith("room-001:") and "no parameter Connect" in v for v in found)
    assert any(v.startswith("room-001:") and "Enterprise-Tls" in v for v in found)
    assert any(v.startswith("room-003:") and "SCEP/Request: not in RoomOS 10.19.4.2" in v
               for v in found)
    assert any(v.startswith("room-004:") and "SyncToPeripherals" in v for v in found)
    assert not any(v.startswith("room-002:") for v in found)


async def test_each_device_reports_its_release_and_product(sim_factory):
    sim = sim_factory(devices=len(MIX), firmware="mix")
    await sim.start()
    try:
        for index, (release, product) in enumerate(MIX, 1):
            name = f"room-{index:03d}"
            client = Device(sim, name)
            try:
                unit = await client.getxml("/Status/SystemUnit")
            finally:
                await client.aclose()
            version = unit.findtext("SystemUnit/Software/Version")
            assert model_for(version).release == release, name
            assert unit.findtext("SystemUnit/Software/DisplayName").startswith(
                f"RoomOS {release}")
            reported = product_code(unit.findtext("SystemUnit/ProductId"),
                                    unit.findtext("SystemUnit/ProductPlatform"))
            assert reported == product.code, name
    finally:
        await sim.stop()


def test_the_mix_is_fixed_and_covers_what_matters():
    releases = {release for release, _ in MIX}
    assert {"9.15.17.4", "10.19.4.2", "11.24.1", "11.27.2.0", "26.1.1", "26.4.1"} <= releases
    for release, product in MIX:
        assert product.code in model_for(release).products, (release, product)
    modern = [(r, p) for r, p in MIX if model_for(r).version.parts[0] >= 11]
    assert any(model_for(r).command("Network Wifi Configure", p.code) is None for r, p in modern)
    assert any(model_for(r).configuration(SYNC, p.code) is None for r, p in modern)
    assert [firmware_for("mix", i).release for i in (1, 9, 17)] == [MIX[0][0]] * 3
    assert firmware_for("mix", 3).product.code == MIX[2][1].code


def test_product_table_matches_the_release_model():
    for product in ALL_PRODUCTS:
        assert product_code(product.product_id, product.platform) == product.code


def test_firmware_choices_are_checked():
    assert check_choice("mix") == "mix" and check_choice(" 11.24.1 ") == "11.24.1"
    assert check_choice("11.24.1:vecchio") == "11.24.1:vecchio"
    for bad in ("11.25", "latest", "", "11.24.1:nosuch", "10.19.4.2:vecchio"):
        with pytest.raises(ValueError):
            check_choice(bad)
    # a single release on a product cycle it lacks falls back to one it runs on
    assert firmware_for("9.15.17.4", 1).product.code in model_for("9.15.17.4").products
    assert set(SUPPORTED) >= {firmware_for(r, 1).release for r in SUPPORTED}


def test_inventory_says_nothing_about_firmware(tmp_path: Path):
    with SimFleetThread(tmp_path / "state", devices=8, firmware="mix", basic_rate=1000.0) as sim:
        text = sim.inventory_path.read_text(encoding="utf-8")
        assert sim.violations() == []
    for release in SUPPORTED:
        assert release not in text
    assert "firmware" not in text.lower() and "roomos" not in text.lower()


def test_serve_refuses_an_unknown_release(tmp_path: Path):
    from certfleet.roomsim.serve import main

    assert main(["serve", "--state", str(tmp_path / "s"), "--firmware", "11.25"]) == 2
    assert not (tmp_path / "s").exists()


async def test_every_status_and_configuration_is_in_the_release_value_space(sim_factory):
    sim = sim_factory(devices=len(MIX), firmware="mix")
    await sim.start()
    try:
        for name, device in sim.devices.items():
            model, code = device.model, device.product_code
            for top, lookup in (("Status", model.status), ("Configuration", model.configuration)):
                tree = device.getxml(top)
                leaves = [(path, element) for path, element in _leaves(tree) if len(element) == 0]
                assert leaves, (name, top)
                for path, element in leaves:
                    node = lookup(path, code)
                    assert node is not None, (name, path)
                    if node.value is not None and element.text:
                        assert node.value.accepts(element.text), (name, path, element.text)
    finally:
        await sim.stop()


def _leaves(element: ET.Element, prefix: str = "") -> list[tuple[str, ET.Element]]:
    found = []
    for child in element:
        label = child.tag if child.get("item") is None else f"{child.tag}[{child.get('item')}]"
        path = f"{prefix}/{label}" if prefix else label
        found.append((path, child))
        found += _leaves(child, path)
    return found


async def test_a_refused_value_is_not_echoed(fleet):
    _, device = fleet
    secret = "c" * 300  # longer than 11.24.1's 128 and 26.1.1's 256
    request = SCEP_REQUEST.format(fp=FP).replace(
        "<CommonName>room</CommonName>", f"<CommonName>room</CommonName>"
        f"<ChallengePassword>{secret}</ChallengePassword>")
    for name in ("room-001", "room-002"):
        reply = await device(name).putxml(request)
        result = reply.find("SCEPRequestResult")
        assert result.get("status") == "ParameterError", name
        assert "ChallengePassword" in result.findtext("Reason")
        assert secret[:20] not in ET.tostring(reply, encoding="unicode")
    logged = [p for r in list(fleet[0].devices["room-001"].requests) for p in r.params]
    assert ("ChallengePassword", "*" * 300) in logged and secret not in repr(logged)
    assert any("ChallengePassword: length 300" in v for v in fleet[0].violations())
