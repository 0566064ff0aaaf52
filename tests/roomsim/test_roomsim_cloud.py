"""roomsim's simulated Webex cloud API over real sockets and real TLS: plain httpx and
hand-written JSON (deliberately not fleet/xapi code), TLS verified against the sim CA."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import ssl
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
import yaml

from certfleet.fleet.inventory import load_inventory
from certfleet.roomsim import SimFleet, SimFleetThread

ID_PREFIX = "Y2lzY29zcGFyazovL3VzL0RFVklDRS8"
UNAUTHORIZED = "The request requires a valid access token set in the Authorization request header."


class Cloud:
    """A script's view of the cloud API: bearer token, JSON in and out."""

    def __init__(self, sim: SimFleet, token: str | None = None) -> None:
        self.sim = sim
        self.context = ssl.create_default_context(cafile=str(sim.ca_pem_path))
        headers = {"Authorization": f"Bearer {token or sim.cloud_token}"}
        self.client = httpx.AsyncClient(
            base_url=sim.cloud_url, verify=self.context, headers=headers, timeout=10.0
        )

    def id(self, name: str = "room-001") -> str:
        return self.sim.cloud_device_id(name)

    async def command(
        self, command: str, name: str = "room-001", body: str | None = None, **arguments: Any
    ) -> httpx.Response:
        payload: dict[str, Any] = {"deviceId": self.id(name), "arguments": arguments}
        if body is not None:
            payload["body"] = body
        return await self.client.post(f"/v1/xapi/command/{command}", json=payload)

    async def status(self, *names: str, name: str = "room-001") -> httpx.Response:
        params = [("deviceId", self.id(name)), *(("name", n) for n in names)]
        return await self.client.get("/v1/xapi/status", params=params)

    async def patch_config(self, operations: Any, name: str = "room-001") -> httpx.Response:
        return await self.client.patch(
            "/v1/deviceConfigurations",
            params={"deviceId": self.id(name)},
            json=operations,
            headers={"Content-Type": "application/json-patch+json"},
        )

    async def aclose(self) -> None:
        await self.client.aclose()


async def local_putxml(sim: SimFleet, name: str, document: str) -> ET.Element:
    context = ssl.create_default_context(cafile=str(sim.ca_pem_path))
    url = f"https://127.0.0.1:{sim.devices[name].port}/putxml"
    async with httpx.AsyncClient(verify=context, auth=("admin", sim.password)) as client:
        response = await client.post(url, content=document, headers={"Content-Type": "text/xml"})
    assert response.status_code == 200, response.text
    return ET.fromstring(response.content)


async def local_getxml(sim: SimFleet, name: str, location: str) -> ET.Element:
    context = ssl.create_default_context(cafile=str(sim.ca_pem_path))
    url = f"https://127.0.0.1:{sim.devices[name].port}/getxml"
    async with httpx.AsyncClient(verify=context, auth=("admin", sim.password)) as client:
        response = await client.get(url, params={"location": location})
    assert response.status_code == 200, response.text
    return ET.fromstring(response.content)


def assert_error(response: httpx.Response, status: int, message: str | None = None) -> str:
    """The Webex error body; returns its message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"message", "errors", "trackingId"}
    assert body["errors"] == [{"description": body["message"]}]
    assert body["trackingId"].startswith("ROOMSIM_")
    assert response.headers["Trackingid"] == body["trackingId"]
    if message is not None:
        assert body["message"] == message
    return str(body["message"])


@pytest.fixture
async def cloud_factory(
    sim_factory: Callable[..., SimFleet],
) -> AsyncIterator[Callable[..., Any]]:
    """Start a cloud-enabled fleet (3 devices unless asked) and a client for it."""
    started: list[tuple[SimFleet, Cloud]] = []

    async def make(**kwargs: Any) -> Cloud:
        sim = sim_factory(cloud=True, **kwargs)
        await sim.start()
        cloud = Cloud(sim)
        started.append((sim, cloud))
        return cloud

    yield make
    for sim, cloud in started:
        await cloud.aclose()
        await sim.stop()


@pytest.fixture
async def cloud(cloud_factory: Callable[..., Any]) -> Cloud:
    result: Cloud = await cloud_factory()
    return result


# ---------------------------------------------------------------- /v1/devices


async def test_devices_paginate_with_link_headers(cloud_factory):
    cloud = await cloud_factory(devices=250)
    sim = cloud.sim
    assert sim.cloud_url.startswith("https://127.0.0.1:")
    url: str | None = "/v1/devices?max=100"
    seen: list[str] = []
    pages = []
    while url is not None:
        response = await cloud.client.get(url)
        assert response.status_code == 200
        items = response.json()["items"]
        pages.append(len(items))
        seen += [item["id"] for item in items]
        following = response.links.get("next")
        url = following["url"] if following else None
        if url is not None:
            assert url.startswith(sim.cloud_url + "/v1/devices?")
    assert pages == [100, 100, 50]
    expected = {sim.cloud_device_id(name) for name in sim.devices}
    assert len(seen) == len(set(seen)) == 250 and set(seen) == expected
    assert all(i.startswith(ID_PREFIX) for i in seen)
    decoded = base64.urlsafe_b64decode(seen[0] + "=" * (-len(seen[0]) % 4)).decode()
    assert decoded.startswith("ciscospark://us/DEVICE/")

    # A full last page still links on; the next page is empty and ends the list.
    url = "/v1/devices?max=125"
    pages = []
    while url is not None:
        response = await cloud.client.get(url)
        pages.append(len(response.json()["items"]))
        url = response.links["next"]["url"] if "next" in response.links else None
    assert pages == [125, 125, 0]

    # max above the cap is clamped; a bad max is a 400.
    big = await cloud.client.get("/v1/devices", params={"max": 5000})
    assert len(big.json()["items"]) == 250 and "link" not in big.headers
    assert_error(await cloud.client.get("/v1/devices", params={"max": "lots"}), 400)


async def test_device_item_and_filters(cloud_factory):
    cloud = await cloud_factory(devices=12)
    response = await cloud.client.get(f"/v1/devices/{cloud.id('room-001')}")
    assert response.status_code == 200
    item = response.json()
    status = await local_getxml(cloud.sim, "room-001", "/Status/SystemUnit")
    assert item["displayName"] == "room-001"
    assert item["product"] == "Cisco Board Pro" == status.findtext("SystemUnit/ProductId")
    assert item["serial"] == status.findtext("SystemUnit/Hardware/Module/SerialNumber")
    assert item["software"] == status.findtext("SystemUnit/Software/DisplayName")
    assert item["connectionStatus"] == "connected"
    assert item["tags"] == ["oslo", "board"]
    assert item["capabilities"] == ["xapi"] and item["permissions"] == ["xapi:all"]
    assert item["type"] == "roomdesk" and item["ip"] == "127.0.0.1"
    for key in ("workspaceId", "orgId", "mac", "created", "lastSeen"):
        assert item[key], key

    async def names(**params: Any) -> list[str]:
        response = await cloud.client.get("/v1/devices", params=params)
        assert response.status_code == 200
        return [d["displayName"] for d in response.json()["items"]]

    assert await names(tag="oslo") == [f"room-{i:03d}" for i in (1, 4, 7, 10)]
    assert await names(tag="oslo,board") == ["room-001"]
    assert await names(tag=["oslo", "board"]) == ["room-001"]
    assert await names(product="RoomKit") == [f"room-{i:03d}" for i in (4, 8, 12)]
    assert await names(product="desk pro") == [f"room-{i:03d}" for i in (2, 6, 10)]
    assert await names(displayName="room-01") == ["room-010", "room-011", "room-012"]
    assert await names(connectionStatus="disconnected") == []
    assert await names(tag="nowhere") == []
    assert_error(await cloud.client.get("/v1/devices/Y2lzY29zcGFyazovL3VzL0RFVklDRS9ubw"), 404)


# ---------------------------------------------------------------- xAPI commands


async def test_command_ca_add_reaches_the_device(cloud):
    ca_pem = trustme.CA().cert_pem.bytes().decode()
    response = await cloud.command("Security.Certificates.CA.Add", body=ca_pem)
    assert response.status_code == 200, response.text
    assert response.json() == {"deviceId": cloud.id(), "result": {}}

    local = await local_putxml(
        cloud.sim,
        "room-001",
        "<Command><Security><Certificates><CA><Show/></CA></Certificates></Security></Command>",
    )
    details = local.findall("CAShowResult/Details")
    assert len(details) == 1
    fingerprint = details[0].findtext("Fingerprint")

    # the command key is case-insensitive, arguments go through the device's validation
    shown = await cloud.command("security.certificates.ca.show", Format="PEM")
    assert shown.status_code == 200
    result = shown.json()["result"]
    assert [d["id"] for d in result["Details"]] == [1]
    assert result["Details"][0]["Fingerprint"] == fingerprint
    assert result["Details"][0]["PEM"] == ca_pem
    assert result["Details"][0]["Version"] == 3  # schema integers are JSON integers

    deleted = await cloud.command("Security.Certificates.CA.Delete", Fingerprint=fingerprint)
    assert deleted.status_code == 200
    assert cloud.sim.devices["room-001"].ca_list == []


async def test_command_errors(cloud):
    message = assert_error(
        await cloud.command("Security.Certificates.Services.Activate", Fingerprint="ab"), 400
    )
    assert "Purpose" in message
    message = assert_error(
        await cloud.command(
            "Security.Certificates.Services.Activate", Fingerprint="ab", Purpose="Nope"
        ),
        400,
    )
    assert "Nope" in message
    assert "No service certificate" in assert_error(
        await cloud.command(
            "Security.Certificates.Services.Activate", Fingerprint="ab" * 20, Purpose="HTTPS"
        ),
        400,
    )
    await cloud.sim.set_fault("room-001", reject_certificates=True)
    assert_error(
        await cloud.command("Security.Certificates.Services.Add", body="x"),
        400,
        "Certificate rejected by device policy",
    )
    # the multiline payload belongs in the top-level body, never in arguments
    response = await cloud.client.post(
        "/v1/xapi/command/Security.Certificates.CA.Add",
        json={"deviceId": cloud.id(), "arguments": {"body": "PEM"}},
    )
    assert_error(response, 400, "Unknown parameter: body")
    response = await cloud.client.post(
        "/v1/xapi/command/Security.Certificates.CA.Show",
        json={"deviceId": cloud.id(), "arguments": ["Format"]},
    )
    assert_error(response, 400)
    response = await cloud.client.post(
        "/v1/xapi/command/Security.Certificates.CA.Show", content=b"{not json"
    )
    assert_error(response, 400)
    assert_error(
        await cloud.command("NonExistent.Fake.Command"),
        400,
        "[Command 'NonExistent.Fake.Command' not supported]",
    )
    response = await cloud.client.post(
        "/v1/xapi/command/Security.Certificates.CA.Show", json={"deviceId": "nope"}
    )
    assert_error(response, 404)
    assert_error(await cloud.client.get("/v1/nothing/here"), 404)
    assert_error(await cloud.client.delete("/v1/xapi/status"), 405)


async def test_disallowed_commands(cloud_factory):
    cloud = await cloud_factory(cloud_disallowed_commands=("Security.Certificates.Services.*",))
    assert_error(
        await cloud.command("Security.Certificates.Services.Show"),
        400,
        "[Command 'Security.Certificates.Services.Show' not supported]",
    )
    assert (await cloud.command("Security.Certificates.CA.Show")).status_code == 200
    schema = await cloud.client.get(
        "/v1/xapi/schema", params={"deviceId": cloud.id(), "command": "Security.Certificates.*"}
    )
    assert schema.status_code == 200
    [entry] = schema.json()
    assert set(entry) == {"deviceId", "commands"}
    commands = entry["commands"]
    assert "Security.Certificates.CA.Add" in commands
    assert "bodySchema" in commands["Security.Certificates.CA.Add"]
    assert not any(c.startswith("Security.Certificates.Services.") for c in commands)


async def test_reboot_through_the_cloud(cloud):
    response = await cloud.command("SystemUnit.Boot", Action="Restart")
    assert response.status_code == 200
    device = (await cloud.client.get(f"/v1/devices/{cloud.id()}")).json()
    assert device["connectionStatus"] == "disconnected"
    await asyncio.sleep(0.6)
    device = (await cloud.client.get(f"/v1/devices/{cloud.id()}")).json()
    assert device["connectionStatus"] == "connected"


# ---------------------------------------------------------------- xAPI status


async def test_status_query(cloud):
    response = await cloud.status("SystemUnit.Software.Version", "systemunit.uptime")
    assert response.status_code == 200
    body = response.json()
    assert body["deviceId"] == cloud.id()
    unit = body["result"]["SystemUnit"]
    assert unit["Software"] == {"Version": "ce26.4.1.5.1234abcd"}
    assert isinstance(unit["Uptime"], int)

    network = (await cloud.status("Network[1].IEEE8021X.*")).json()["result"]
    assert network == {"Network": [{"id": 1, "IEEE8021X": {"Reason": "", "Status": "Off"}}]}
    star = (await cloud.status("*.ProductId")).json()["result"]
    assert star == {"SystemUnit": {"ProductId": "Cisco Board Pro"}}
    joined = (await cloud.status("SystemUnit.ProductId,SystemUnit.ProductPlatform")).json()
    assert joined["result"]["SystemUnit"] == {
        "ProductId": "Cisco Board Pro",
        "ProductPlatform": "Board Pro",
    }
    invalid = await cloud.status("No.Such.Status")
    assert invalid.status_code == 200 and invalid.json()["result"] == {}
    assert_error(await cloud.status(*[f"SystemUnit.X{i}" for i in range(11)]), 400)
    assert_error(await cloud.status(), 400)
    assert_error(
        await cloud.client.get("/v1/xapi/status", params={"deviceId": "x", "name": "A"}), 404
    )


# ---------------------------------------------------------------- device configurations


async def test_device_configurations(cloud):
    params = {"deviceId": cloud.id(), "key": "NetworkServices.HTTP.Mode"}
    read = await cloud.client.get("/v1/deviceConfigurations", params=params)
    assert read.status_code == 200
    item = read.json()["items"]["NetworkServices.HTTP.Mode"]
    assert item["value"] == "HTTPS" and item["source"] == "default"
    assert item["valueSpace"] == {"type": "string", "enum": ["HTTP+HTTPS", "HTTPS", "Off"]}
    assert item["sources"]["default"]["editability"]["isEditable"] is False

    response = await cloud.patch_config(
        [
            {
                "op": "replace",
                "path": "NetworkServices.HTTP.Mode/sources/configured/value",
                "value": "HTTP+HTTPS",
            },
            {
                "op": "replace",
                "path": "Network[1].IEEE8021X.Mode/sources/configured/value",
                "value": "On",
            },
        ]
    )
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert len(items) > 2  # the whole configuration comes back
    assert items["NetworkServices.HTTP.Mode"]["value"] == "HTTP+HTTPS"
    assert items["NetworkServices.HTTP.Mode"]["source"] == "configured"
    assert items["Network[1].IEEE8021X.Mode"]["sources"]["configured"]["value"] == "On"
    local = await local_getxml(cloud.sim, "room-001", "/Configuration/NetworkServices/HTTP")
    assert local.findtext("NetworkServices/HTTP/Mode") == "HTTP+HTTPS"

    wildcard = await cloud.client.get(
        "/v1/deviceConfigurations",
        params={"deviceId": cloud.id(), "key": "Network[*].IEEE8021X.Eap.*"},
    )
    assert sorted(wildcard.json()["items"]) == [
        f"Network[1].IEEE8021X.Eap.{m}" for m in ("Md5", "Peap", "Tls", "Ttls")
    ]

    removed = await cloud.patch_config(
        [{"op": "remove", "path": "NetworkServices.HTTP.Mode/sources/configured/value"}]
    )
    assert removed.json()["items"]["NetworkServices.HTTP.Mode"]["source"] == "default"
    assert cloud.sim.devices["room-001"].config["NetworkServices/HTTP/Mode"] == "HTTPS"

    # all or nothing: one bad operation applies none
    bad = await cloud.patch_config(
        [
            {"op": "replace", "path": "NetworkServices.HTTP.Mode/sources/configured/value",
             "value": "Off"},
            {"op": "replace", "path": "Network[1].IEEE8021X.Mode/sources/configured/value",
             "value": "Maybe"},
        ]
    )  # fmt: skip
    assert "Maybe" in assert_error(bad, 400)
    assert cloud.sim.devices["room-001"].config["NetworkServices/HTTP/Mode"] == "HTTPS"
    for operations in (
        [
            {
                "op": "add",
                "path": "NetworkServices.HTTP.Mode/sources/configured/value",
                "value": "Off",
            }
        ],
        [{"op": "replace", "path": "/items/NetworkServices.HTTP.Mode/value", "value": "Off"}],
        [{"op": "replace", "path": "No.Such.Key/sources/configured/value", "value": "Off"}],
        [
            {
                "op": "replace",
                "path": "Network[1].IEEE8021X.Mode/sources/configured/value",
                "value": 1,
            }
        ],
        {"op": "replace"},
    ):
        assert_error(await cloud.patch_config(operations), 400)
    wrong_type = await cloud.client.patch(
        "/v1/deviceConfigurations", params={"deviceId": cloud.id()}, json=[]
    )
    assert_error(wrong_type, 415)


# ---------------------------------------------------------------- auth, offline, limits


async def test_auth_errors(cloud):
    no_token = await cloud.client.get("/v1/devices", headers={"Authorization": ""})
    assert_error(no_token, 401, UNAUTHORIZED)
    wrong = Cloud(cloud.sim, token="not-the-token")
    try:
        assert_error(await wrong.client.get("/v1/devices"), 401, UNAUTHORIZED)
        assert_error(await wrong.command("Security.Certificates.CA.Show"), 401, UNAUTHORIZED)
    finally:
        await wrong.aclose()


async def test_offline_device(cloud):
    sim = cloud.sim
    sim.set_cloud_offline("room-002", True)
    listed = await cloud.client.get("/v1/devices", params={"connectionStatus": "disconnected"})
    assert [d["displayName"] for d in listed.json()["items"]] == ["room-002"]
    assert_error(
        await cloud.command("Security.Certificates.CA.Show", name="room-002"),
        409,
        "Device is offline",
    )
    assert_error(await cloud.status("SystemUnit.Uptime", name="room-002"), 409)

    # configurations are accepted while offline and reach the device when it is back
    patched = await cloud.patch_config(
        [{"op": "replace", "path": "NetworkServices.HTTP.Mode/sources/configured/value",
          "value": "Off"}],
        name="room-002",
    )  # fmt: skip
    assert patched.status_code == 200
    assert patched.json()["items"]["NetworkServices.HTTP.Mode"]["value"] == "Off"
    assert sim.devices["room-002"].config["NetworkServices/HTTP/Mode"] == "HTTPS"
    sim.set_cloud_offline("room-002", False)
    assert sim.devices["room-002"].config["NetworkServices/HTTP/Mode"] == "Off"
    assert (await cloud.command("Security.Certificates.CA.Show", name="room-002")).is_success

    # a device whose local listener is down (the offline fault) is disconnected too
    await sim.set_fault("room-003", offline=True)
    item = (await cloud.client.get(f"/v1/devices/{cloud.id('room-003')}")).json()
    assert item["connectionStatus"] == "disconnected"


async def test_rate_limit_per_minute(cloud_factory):
    cloud = await cloud_factory(cloud_rate_per_minute=5)
    for _ in range(4):
        assert (await cloud.client.get("/v1/devices")).status_code == 200
    assert_error(await cloud.client.get("/v1/devices/nope"), 404)  # errors count as well
    limited = await cloud.client.get("/v1/devices")
    assert_error(limited, 429)
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert (await cloud.status("SystemUnit.Uptime")).status_code == 429
    # no valid token, no budget to spend: still a 401
    assert (await cloud.client.get("/v1/devices", headers={"Authorization": ""})).status_code == 401


async def test_added_tokens_have_their_own_window_and_traffic_is_counted(cloud_factory):
    cloud = await cloud_factory(cloud_rate_per_minute=2)
    sim = cloud.sim
    assert sim.cloud is not None
    second = Cloud(sim, token=sim.cloud.add_token())
    try:
        agent = {"User-Agent": "bench-a/1"}
        for _ in range(2):
            assert (await cloud.client.get("/v1/devices", headers=agent)).status_code == 200
        assert_error(await cloud.client.get("/v1/devices", headers=agent), 429)
        # the added token is another user: the first token's full window does not touch it
        for _ in range(2):
            assert (await second.client.get("/v1/devices", headers=agent)).status_code == 200
        assert_error(await second.client.get("/v1/devices"), 429)
        bad = await cloud.client.get("/v1/devices", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401
        counts = {(t["token"], t["agent"], t["status"]): t["count"] for t in sim.cloud.traffic()}
        assert counts[(1, "bench-a/1", 200)] == 2 and counts[(1, "bench-a/1", 429)] == 1
        assert counts[(2, "bench-a/1", 200)] == 2
        assert sum(c for (n, _, s), c in counts.items() if n == 2 and s == 429) == 1
        assert sum(c for (n, _, s), c in counts.items() if n == 0 and s == 401) == 1
        assert sum(counts.values()) == 7
    finally:
        await second.aclose()


async def test_forced_429_with_malformed_retry_after(cloud):
    sim = cloud.sim
    sim.force_429(2, "soon", html=True)
    for _ in range(2):
        response = await cloud.client.get("/v1/devices")
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "soon"
        assert response.headers["Content-Type"].startswith("text/html")
        assert "<html>" in response.text
    assert (await cloud.client.get("/v1/devices")).status_code == 200

    sim.force_429(1, "rand(30),add(30)")
    response = await cloud.command("Security.Certificates.CA.Show")
    assert_error(response, 429)
    assert response.headers["Retry-After"] == "rand(30),add(30)"
    sim.force_429(1, None)
    response = await cloud.client.get("/v1/devices")
    assert response.status_code == 429 and "Retry-After" not in response.headers
    assert (await cloud.client.get("/v1/devices")).status_code == 200


# ---------------------------------------------------------------- thread, inventory, serve


def test_thread_cloud_inventory_and_token(tmp_path: Path):
    state = tmp_path / "state"
    with SimFleetThread(state, devices=3, cloud=True) as sim:
        token_file = state / "cloud-token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert token_file.read_text().strip() == sim.cloud_token
        data = yaml.safe_load(sim.cloud_inventory_path.read_text())
        assert data["defaults"] == {
            "transport": "cloud",
            "api_url": sim.cloud_url,
            "api_verify": f"ca:{state.resolve() / 'sim-ca.pem'}",
            "token": f"file:{state.resolve() / 'cloud-token'}",
        }
        assert data["devices"]["room-002"] == {
            "device_id": sim.cloud_device_id("room-002"),
            "groups": ["bergen"],
            "tags": ["desk"],
        }
        inventory = load_inventory(sim.cloud_inventory_path)
        assert inventory.devices["room-001"].transport == "cloud"
        assert inventory.devices["room-001"].api_url == sim.cloud_url

        verify = ssl.create_default_context(cafile=str(sim.ca_pem_path))
        headers = {"Authorization": f"Bearer {sim.cloud_token}"}
        with httpx.Client(base_url=sim.cloud_url, verify=verify, headers=headers) as client:
            sim.set_cloud_offline("room-001")
            item = client.get(f"/v1/devices/{sim.cloud_device_id('room-001')}").json()
            assert item["connectionStatus"] == "disconnected"
            sim.force_429(1)
            response = client.get("/v1/devices")
            assert response.status_code == 429 and response.headers["Retry-After"] == "2"
        url, token = sim.cloud_url, sim.cloud_token
    with SimFleetThread(state, devices=3, cloud=True) as again:  # same token and port
        assert (again.cloud_url, again.cloud_token) == (url, token)


def test_serve_cloud_flag(tmp_path: Path):
    state = tmp_path / "state"
    command = [
        sys.executable, "-m", "certfleet.roomsim", "serve", "--devices", "2", "--state", str(state),
        "--cloud",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as process:
        try:
            assert process.stdout is not None and process.stderr is not None
            assert process.stdout.readline() == "ready\n"
            inventory = yaml.safe_load((state / "inventory-cloud.yaml").read_text())
            url = inventory["defaults"]["api_url"]
            token = (state / "cloud-token").read_text().strip()
            verify = ssl.create_default_context(cafile=str(state / "sim-ca.pem"))
            response = httpx.get(
                f"{url}/v1/devices", verify=verify, headers={"Authorization": f"Bearer {token}"}
            )
            assert [d["displayName"] for d in response.json()["items"]] == [
                "room-001",
                "room-002",
            ]
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0
            assert url in process.stderr.read()
        finally:
            if process.poll() is None:
                process.kill()


def test_cloud_arguments_are_checked(tmp_path: Path):
    with pytest.raises(ValueError):
        SimFleet(tmp_path, cloud=True, cloud_rate_per_minute=0)
    with pytest.raises(RuntimeError):
        _ = SimFleet(tmp_path).cloud_url
    with pytest.raises(KeyError):
        SimFleet(tmp_path, devices=2).cloud_device_id("room-003")
