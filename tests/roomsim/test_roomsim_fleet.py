"""Fleet-level behaviour: persistence, reboots, faults, the threaded handle, inventory, serve."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import trustme
import yaml

from certfleet.roomsim import SimFleet, SimFleetThread
from certfleet.roomsim.faults import FaultError, load_faults_file

CA_SHOW = "<Command><Security><Certificates><CA><Show/></CA></Certificates></Security></Command>"


def ca_add(pem: str) -> str:
    return (
        "<Command><Security><Certificates><CA><Add>"
        f"<body>{pem}</body></Add></CA></Certificates></Security></Command>"
    )


async def test_persistence_across_restart(sim_factory, xapi_for, tls_peer_sha1, tmp_path):
    sim = sim_factory(devices=2)
    await sim.start()
    password = sim.password
    ports = {name: d.port for name, d in sim.devices.items()}
    https = {name: d.https_certificate().fingerprint for name, d in sim.devices.items()}
    ca_pem = trustme.CA().cert_pem.bytes().decode()
    reply = await xapi_for(fleet=sim).putxml(ca_add(ca_pem))
    assert reply.find("CAAddResult").get("status") == "OK"
    await xapi_for(fleet=sim).putxml(
        '<Configuration><Network item="1"><IEEE8021X><Mode>On</Mode></IEEE8021X></Network>'
        "</Configuration>"
    )
    await sim.stop()

    state = tmp_path / "state"
    for private in ("sim-ca.key", "admin-password", "devices/room-001/state.json"):
        assert stat.S_IMODE((state / private).stat().st_mode) == 0o600, private
    assert not list(state.glob("devices/*/.tls-*"))  # no key material left in temp files

    again = sim_factory(devices=2)
    await again.start()
    try:
        assert again.password == password
        assert {name: d.port for name, d in again.devices.items()} == ports
        device = again.devices["room-001"]
        assert [c.pem for c in device.ca_list] == [ca_pem]
        assert device.config["Network[1]/IEEE8021X/Mode"] == "On"
        assert await tls_peer_sha1(device.port, xapi_for(fleet=again).context) == https["room-001"]
        show = await xapi_for(fleet=again).putxml(CA_SHOW)
        assert len(show.findall("CAShowResult/Details")) == 1
    finally:
        await again.stop()


async def test_reboot_takes_device_away_and_back(sim, xapi, xapi_for):
    await asyncio.sleep(1.1)
    uptime = int((await xapi.getxml("/Status/SystemUnit/Uptime")).findtext("SystemUnit/Uptime"))
    assert uptime >= 1
    reply = await xapi.putxml(
        "<Command><SystemUnit><Boot><Action>Restart</Action></Boot></SystemUnit></Command>"
    )
    assert reply.find("SystemUnitBootResult").get("status") == "OK"
    await asyncio.sleep(0.05)
    with pytest.raises(httpx.ConnectError):  # listener closed: connection refused
        await xapi_for().client.get("/getxml?location=/Status")
    await asyncio.sleep(0.4)
    root = await xapi_for().getxml("/Status/SystemUnit/Uptime")
    assert int(root.findtext("SystemUnit/Uptime")) < uptime
    assert sim.devices["room-001"].port == xapi.port

    shutdown = await xapi_for().putxml(
        "<Command><SystemUnit><Boot><Action>Shutdown</Action></Boot></SystemUnit></Command>"
    )
    assert shutdown.find("SystemUnitBootResult").get("status") == "OK"
    await asyncio.sleep(0.45)  # longer than a reboot: a shut-down device stays off
    with pytest.raises(httpx.ConnectError):
        await xapi_for().client.get("/getxml?location=/Status")
    await sim.clear_faults("room-001")
    assert (await xapi_for().getxml("/Status/SystemUnit")).tag == "Status"


async def test_faults(sim, xapi, xapi_for):
    await sim.set_fault("room-001", offline=True)
    with pytest.raises(httpx.ConnectError):
        await xapi_for().client.get("/getxml?location=/Status")
    other = await xapi_for("room-002").getxml("/Status/SystemUnit/ProductId")
    assert other.findtext("SystemUnit/ProductId") == "Cisco Desk Pro"
    await sim.clear_faults("room-001")
    assert (await xapi_for().getxml("/Status/SystemUnit")).tag == "Status"

    sim.set_fault("room-001", garbage=True)
    garbage = await xapi.client.get("/getxml?location=/Status")
    assert garbage.status_code == 200 and not garbage.content.startswith(b"<?xml")

    sim.set_fault("room-001", garbage=False, action_error=True)
    assert (await xapi.putxml(CA_SHOW)).tag == "ActionError"

    sim.set_fault("room-001", action_error=False, http_status=500)
    assert (await xapi.client.get("/getxml?location=/Status")).status_code == 500

    sim.set_fault("room-001", http_status=None, drop=True)
    with pytest.raises(httpx.RemoteProtocolError):
        await xapi_for().client.get("/getxml?location=/Status")

    sim.set_fault("room-001", drop=False, latency=0.3)
    started = time.monotonic()
    await xapi.getxml("/Status/SystemUnit/Uptime")
    assert time.monotonic() - started >= 0.3

    sim.clear_faults()
    assert sim.devices["room-001"].faults.active() == {}


async def test_faults_file(tmp_path, sim):
    path = tmp_path / "faults.json"
    path.write_text(json.dumps({"*": {"latency": 0.1}, "room-002": {"garbage": True}}))
    await sim.apply_faults_file(path)
    assert sim.devices["room-001"].faults.active() == {"latency": 0.1}
    assert sim.devices["room-002"].faults.active() == {"latency": 0.1, "garbage": True}

    for bad in ({"room-001": {"smoke": True}}, {"room-001": {"latency": "slow"}}, [1]):
        path.write_text(json.dumps(bad))
        with pytest.raises(FaultError):
            load_faults_file(path)


def test_thread_handle_and_inventory(tmp_path):
    state = tmp_path / "state"
    with SimFleetThread(state, devices=4, basic_rate=1000.0) as sim:
        inventory = yaml.safe_load(sim.inventory_path.read_text())
        assert sim.inventory_path == state.resolve() / "inventory.yaml"
        assert inventory["defaults"] == {
            "transport": "local",
            "username": "admin",
            "password": f"file:{state.resolve() / 'admin-password'}",
            "verify": f"ca:{state.resolve() / 'sim-ca.pem'}",
        }
        assert inventory["groups"] == {
            g: {"tags": ["norway"]} for g in ("oslo", "bergen", "trondheim")
        }
        assert inventory["devices"]["room-004"] == {
            "host": "127.0.0.1",
            "port": sim.devices["room-004"].port,
            "groups": ["oslo"],
            "tags": ["roomkit"],
        }
        assert [d["tags"][0] for d in inventory["devices"].values()] == [
            "board", "desk", "bar", "roomkit",
        ]  # fmt: skip
        assert sim.inventory_path.read_text().startswith("# Written by roomsim")
        password = (state / "admin-password").read_text().strip()
        assert password == sim.password

        port = sim.devices["room-002"].port
        with httpx.Client(
            verify=ssl.create_default_context(cafile=str(sim.ca_pem_path)), auth=("admin", password)
        ) as client:
            url = f"https://127.0.0.1:{port}/getxml?location=/Status/SystemUnit/ProductId"
            assert client.get(url).status_code == 200
            sim.set_fault("room-002", offline=True)
            with pytest.raises(httpx.ConnectError):
                client.get(url)
            sim.clear_faults()
            assert client.get(url).status_code == 200


def test_serve_main_ready_and_sigterm(tmp_path):
    state, inventory = tmp_path / "state", tmp_path / "inv.yaml"
    command = [
        sys.executable, "-m", "certfleet.roomsim", "serve", "--devices", "2", "--state", str(state),
        "--inventory-out", str(inventory), "--request-delay", "0.01",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as process:
        try:
            assert process.stdout is not None
            assert process.stdout.readline() == "ready\n"
            devices = yaml.safe_load(inventory.read_text())["devices"]
            assert sorted(devices) == ["room-001", "room-002"]
            password = (state / "admin-password").read_text().strip()
            verify = ssl.create_default_context(cafile=str(state / "sim-ca.pem"))
            with httpx.Client(verify=verify, auth=("admin", password)) as client:
                port = devices["room-001"]["port"]
                url = f"https://127.0.0.1:{port}/getxml?location=/Status/SystemUnit"
                assert client.get(url).status_code == 200
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0
            assert process.stdout.read() == ""  # exactly one line on stdout
        finally:
            if process.poll() is None:
                process.kill()
    assert (state / "devices" / "room-002" / "state.json").exists()


def test_serve_rejects_bad_faults_file(tmp_path):
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps({"*": {"explode": True}}))
    done = subprocess.run(
        [sys.executable, "-m", "certfleet.roomsim", "serve", "--devices", "1", "--state",
         str(tmp_path / "state"), "--faults", str(faults)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 2
    assert "explode" in done.stderr and done.stdout == ""


def test_fleet_arguments_are_checked(tmp_path: Path):
    with pytest.raises(ValueError):
        SimFleet(tmp_path, devices=0)
    with pytest.raises(ValueError):
        SimFleet(tmp_path, name_prefix="Bad Name")
