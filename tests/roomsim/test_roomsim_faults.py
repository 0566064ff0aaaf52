"""The reliability faults of roomsim (truncate, storm_503, hostile_xml, slow_reboot,
offline_after) and fault shares of the fleet, seen with raw clients: httpx, TLS sockets
and aiohttp WebSockets, never fleet/ code."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import defusedxml.ElementTree as SafeET
import httpx
import pytest
import yaml
from defusedxml import DefusedXmlException
from test_roomsim_websocket import VERSION, connect, handshake_status

from certfleet.roomsim import SimFleet, SimFleetThread
from certfleet.roomsim.faults import (
    FaultError,
    Faults,
    load_faults_file,
    parse_fault_spec,
    pick_fraction,
    plan_from_specs,
)

CA_SHOW = "<Command><Security><Certificates><CA><Show/></CA></Certificates></Security></Command>"
BOOT = "<Command><SystemUnit><Boot><Action>Restart</Action></Boot></SystemUnit></Command>"


def raw_request(sim: SimFleet, name: str, request: bytes) -> bytes:
    """Send one HTTP/1.1 request over verified TLS; everything read until the peer closes
    (a reset or a TLS EOF without close_notify ends the read too)."""
    context = ssl.create_default_context(cafile=str(sim.ca_pem_path))
    received = b""
    with socket.create_connection(("127.0.0.1", sim.devices[name].port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(request)
        while True:
            try:
                chunk = tls.recv(65536)
            except (ssl.SSLError, ConnectionError):
                break
            if not chunk:
                break
            received += chunk
    return received


def basic_header(sim: SimFleet) -> str:
    return "Basic " + base64.b64encode(f"admin:{sim.password}".encode()).decode()


def split_reply(data: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body


async def in_thread(function: Any, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, function, *args)


# ------------------------------------------------------------------------ truncate


async def test_truncate_stops_the_body_halfway_then_closes(sim: SimFleet, xapi: Any) -> None:
    whole = await xapi.client.get("/getxml", params={"location": "/Status/SystemUnit"})
    await sim.set_fault("room-001", truncate=True)
    request = (
        "GET /getxml?location=/Status/SystemUnit HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: {basic_header(sim)}\r\n\r\n"
    ).encode()
    status, headers, body = split_reply(await in_thread(raw_request, sim, "room-001", request))
    assert status == 200
    length = int(headers["content-length"])
    assert length == len(whole.content)  # the full length is announced...
    assert len(body) == length // 2  # ...and half of it arrives
    assert body == whole.content[: length // 2]

    with pytest.raises(httpx.RemoteProtocolError, match=r"incomplete|complete message body"):
        await xapi.client.get("/getxml", params={"location": "/Status/SystemUnit"})

    # a reply without a body (session begin: 204) goes out whole
    begin = (
        "POST /xmlapi/session/begin HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n"
        f"Authorization: {basic_header(sim)}\r\nConnection: close\r\n\r\n"
    ).encode()
    status, headers, _ = split_reply(await in_thread(raw_request, sim, "room-001", begin))
    assert status == 204 and "SessionId=" in headers["set-cookie"]


async def test_truncate_on_websocket_cuts_the_answer_frame(sim: SimFleet) -> None:
    rpc = await connect(sim)
    try:
        await sim.set_fault("room-001", truncate=True)
        await rpc.send(rpc.request("xGet", {"Path": VERSION}))
        message = await rpc.ws.receive(timeout=5)
        assert message.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSED,
                                aiohttp.WSMsgType.CLOSE)
    finally:
        await rpc.close()


# ----------------------------------------------------------------------- storm_503


async def test_storm_503_answers_the_next_n_requests_then_recovers(sim: SimFleet, xapi: Any,
                                                                    xapi_for: Any) -> None:
    await sim.set_fault("room-001", storm_503=3)
    for left in (2, 1, 0):
        reply = await xapi.client.get("/getxml", params={"location": "/Status/SystemUnit"})
        assert reply.status_code == 503
        assert reply.headers["retry-after"] == "1"
        assert sim.devices["room-001"].faults.storm_503 == left
    assert (await xapi.getxml("/Status/SystemUnit")).tag == "Status"
    assert sim.devices["room-001"].faults.active() == {}
    # other devices never saw it
    assert (await xapi_for("room-002").client.get("/getxml?location=/Status")).status_code == 200


async def test_storm_503_refuses_websocket_handshakes(sim: SimFleet) -> None:
    await sim.set_fault("room-001", storm_503=1)
    assert await handshake_status(sim) == 503
    rpc = await connect(sim)  # the storm is over
    await rpc.close()


# --------------------------------------------------------------------- hostile_xml


@pytest.mark.parametrize("kind", ["laughs", "external"])
async def test_hostile_xml_replies(sim: SimFleet, xapi: Any, kind: str) -> None:
    await sim.set_fault("room-001", hostile_xml=kind)
    for reply in (
        await xapi.client.get("/getxml", params={"location": "/Status/SystemUnit"}),
        await xapi.client.post("/putxml", content=CA_SHOW),
    ):
        assert reply.status_code == 200
        assert reply.headers["content-type"] == "text/xml; charset=UTF-8"
        text = reply.text
        assert "<!DOCTYPE" in text
        if kind == "laughs":
            assert '<!ENTITY lol9 "&lol8;&lol8;' in text and "&lol9;" in text
        else:
            assert '<!ENTITY x SYSTEM "file:///etc/passwd">' in text and "&x;" in text
        assert len(reply.content) < 2000  # roomsim sends the declarations, never the expansion
        with pytest.raises(DefusedXmlException):
            SafeET.fromstring(reply.content)
    assert "root:" not in text


def test_hostile_xml_values_are_checked() -> None:
    faults = Faults()
    faults.update(hostile_xml=True)
    assert faults.hostile_xml == "laughs"
    with pytest.raises(FaultError, match="laughs, external"):
        faults.update(hostile_xml="quadratic")


# --------------------------------------------------------------------- slow_reboot


async def test_slow_reboot_overrides_the_reboot_time(sim: SimFleet, xapi: Any,
                                                     xapi_for: Any) -> None:
    # the fleet reboots in 0.3 s (sim_factory); this device takes 1.5 s
    await sim.set_fault("room-001", slow_reboot=1.5)
    started = time.monotonic()
    reply = await xapi.putxml(BOOT)
    assert reply.find("SystemUnitBootResult").get("status") == "OK"
    await asyncio.sleep(0.8)
    with pytest.raises(httpx.ConnectError):
        await xapi_for().client.get("/getxml?location=/Status")
    while True:
        try:
            await xapi_for().client.get("/getxml?location=/Status")
            break
        except httpx.ConnectError:
            assert time.monotonic() - started < 10
            await asyncio.sleep(0.1)
    assert 1.4 <= time.monotonic() - started < 5
    # another device still reboots in the fleet's time
    await sim.servers["room-002"].boot("Restart")


# ------------------------------------------------------------------- offline_after


async def test_offline_after_answers_n_requests_then_goes_offline(sim: SimFleet, xapi: Any,
                                                                   xapi_for: Any) -> None:
    await sim.set_fault("room-001", offline_after=3)
    await xapi.getxml("/Status/SystemUnit")
    assert (await xapi.putxml(CA_SHOW)).tag == "Command"
    last = await xapi.client.get("/getxml", params={"location": "/Status/SystemUnit"})
    assert last.status_code == 200
    assert last.headers["connection"].lower() == "close"
    await asyncio.sleep(0.3)
    with pytest.raises(httpx.ConnectError):  # the listener is gone: connection refused
        await xapi_for().client.get("/getxml?location=/Status")
    assert sim.devices["room-001"].faults.active() == {"offline": True}
    await sim.clear_faults("room-001")
    assert (await xapi_for().getxml("/Status/SystemUnit")).tag == "Status"


async def test_offline_after_counts_websocket_messages(sim: SimFleet) -> None:
    await sim.set_fault("room-001", offline_after=3)  # the handshake and two messages
    rpc = await connect(sim)
    try:
        assert (await rpc.call("xGet", {"Path": VERSION}))["result"]
        assert (await rpc.call("xGet", {"Path": VERSION}))["result"]
        message = await rpc.ws.receive(timeout=5)
        assert message.type == aiohttp.WSMsgType.CLOSE and message.data == 1001
    finally:
        await rpc.close()
    with pytest.raises(aiohttp.ClientConnectorError):
        await connect(sim)
    await sim.clear_faults("room-001")


def test_counter_values_are_checked() -> None:
    for name in ("storm_503", "offline_after"):
        with pytest.raises(FaultError, match="count"):
            Faults().update(**{name: True})
        with pytest.raises(FaultError, match="count"):
            Faults().update(**{name: -1})
    with pytest.raises(FaultError, match="seconds"):
        Faults().update(slow_reboot="long")


# ---------------------------------------------------------------- shares and specs


def test_pick_fraction_is_deterministic_and_independent() -> None:
    names = [f"room-{i:03d}" for i in range(1, 301)]
    ten = pick_fraction(names, 10)
    assert len(ten) == 30 and ten == sorted(ten)
    assert pick_fraction(list(reversed(names)), 10) == ten  # order of the names is irrelevant
    assert pick_fraction(names, 10, seed=1) != ten
    twenty = pick_fraction(names, 20)
    assert len(twenty) == 60
    assert len(set(ten) & set(twenty)) < 30  # independent draws, not nested
    assert len(pick_fraction(names[:5], 10)) == 1  # at least one device
    assert pick_fraction(names[:4], 100) == names[:4]
    with pytest.raises(FaultError):
        pick_fraction(names, 0)


def test_fault_specs() -> None:
    assert parse_fault_spec("truncate@10%") == ("10%", {"truncate": True})
    assert parse_fault_spec("latency=0.2@room-003") == ("room-003", {"latency": 0.2})
    assert parse_fault_spec("storm_503=5@*") == ("*", {"storm_503": 5})
    assert parse_fault_spec("storm_503=5") == ("*", {"storm_503": 5})
    assert parse_fault_spec("hostile_xml=external@2.5%") == ("2.5%", {"hostile_xml": "external"})
    assert parse_fault_spec("drop=false@room-001") == ("room-001", {"drop": False})
    for bad, why in [("smoke@room-001", "unknown fault"), ("latency=slow", "seconds"),
                     ("truncate@", "nothing after @"), ("truncate@0%", "more than 0%"),
                     ("truncate@150%", "at most 100%"), ("truncate@x%", "percentage"),
                     ("storm_503@*", "count"), ("latency=", "no value"), ("=1", "no fault")]:
        with pytest.raises(FaultError) as caught:
            parse_fault_spec(bad)
        assert f"--fault {bad!r}" in str(caught.value) and why in str(caught.value), caught.value


async def test_shares_in_a_faults_file(tmp_path: Path, sim_factory: Any) -> None:
    sim = sim_factory(devices=10)
    names = sim.names()
    path = tmp_path / "faults.json"
    path.write_text(json.dumps({
        "seed": 7,
        "*": {"latency": 0.01},
        "20%": {"truncate": True, "latency": 0.02},
        "room-001": {"latency": 0.03},
    }))
    plan = load_faults_file(path)
    resolved = plan.resolve(names)
    share = pick_fraction(names, 20, seed=7)
    assert len(share) == 2
    for name in names:
        expected: dict[str, Any] = {"latency": 0.01}
        if name in share:
            expected = {"latency": 0.02, "truncate": True}
        if name == "room-001":
            expected = {**expected, "latency": 0.03}
        assert resolved[name] == expected, name
    await sim.start()
    try:
        await sim.apply_faults_file(path)
        assert {n for n, d in sim.devices.items() if d.faults.truncate} == set(share)
        chosen = await sim.set_fault_fraction(30, seed=3, offline_after=5)
        assert chosen == sim.pick_fraction("30%", seed=3) and len(chosen) == 3
        assert all(sim.devices[n].faults.offline_after == 5 for n in chosen)
        await sim.clear_faults("20%")  # a share with seed 0: clears those devices
        cleared = sim.pick_fraction(20)
        assert all(not sim.devices[n].faults.active() for n in cleared)
    finally:
        await sim.stop()

    for bad in ({"seed": "x"}, {"0%": {"drop": True}}, {"room-001": {"storm_503": 1.5}}):
        path.write_text(json.dumps(bad))
        with pytest.raises(FaultError):
            load_faults_file(path)
    with pytest.raises(FaultError, match="no simulated device named 'room-099'"):
        plan_from_specs(["drop@room-099"]).resolve(names)


def test_thread_handle_sets_fault_fractions(tmp_path: Path) -> None:
    with SimFleetThread(tmp_path / "state", devices=6, basic_rate=1000.0) as sim:
        chosen = sim.set_fault_fraction(50, seed=2, http_status=500)
        assert chosen == sim.pick_fraction(50, seed=2) and len(chosen) == 3
        assert {n for n, d in sim.devices.items() if d.faults.http_status == 500} == set(chosen)
        sim.set_fault("50%", drop=True)
        assert {n for n, d in sim.devices.items() if d.faults.drop} == set(sim.pick_fraction(50))
        sim.apply_faults({"*": {"latency": 0.01}})
        assert all(d.faults.latency == 0.01 for d in sim.devices.values())
        sim.clear_faults()
        assert all(not d.faults.active() for d in sim.devices.values())


# ------------------------------------------------------------- the command line


def serve_command(tmp_path: Path, *extra: str, via_certfleet: bool = False) -> list[str]:
    base = ([sys.executable, "-m", "certfleet.cli.main", "sim", "serve"] if via_certfleet
            else [sys.executable, "-m", "certfleet.roomsim", "serve"])
    return [*base, "--devices", "4", "--state", str(tmp_path / "state"), *extra]


@pytest.mark.parametrize("via_certfleet", [False, True])
def test_serve_with_fault_specs(tmp_path: Path, via_certfleet: bool) -> None:
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps({"room-002": {"http_status": 500}}))
    command = serve_command(
        tmp_path, "--faults", str(faults), "--fault", "http_status=418@room-002",
        "--fault", "storm_503=2@room-003", "--fault", "hostile_xml@50%", "--fault-seed", "4",
        via_certfleet=via_certfleet,
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=env) as process:
        try:
            assert process.stdout is not None and process.stderr is not None
            assert process.stdout.readline() == "ready\n"
            state = tmp_path / "state"
            devices = yaml.safe_load((state / "inventory.yaml").read_text())["devices"]
            verify = ssl.create_default_context(cafile=str(state / "sim-ca.pem"))
            password = (state / "admin-password").read_text().strip()
            hostile = set(pick_fraction(list(devices), 50, seed=4))
            with httpx.Client(verify=verify, auth=("admin", password)) as client:
                def get(name: str) -> httpx.Response:
                    port = devices[name]["port"]
                    return client.get(f"https://127.0.0.1:{port}/getxml?location=/Status")

                assert get("room-002").status_code == 418  # --fault wins over the file
                assert [get("room-003").status_code for _ in range(3)] == [503, 503, 200]
                for name in devices:
                    if name == "room-002":
                        continue
                    reply = get(name)
                    assert ("<!DOCTYPE" in reply.text) == (name in hostile), name
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=20) == 0
            err = process.stderr.read()
            assert f"faults on {len(hostile | {'room-002', 'room-003'})} device(s)" in err
            assert "room-002: http_status=418" in err
        finally:
            if process.poll() is None:
                process.kill()


@pytest.mark.parametrize("via_certfleet", [False, True])
def test_serve_rejects_bad_fault_specs(tmp_path: Path, via_certfleet: bool) -> None:
    for spec, words in [("smoke@room-001", "unknown fault 'smoke'"),
                        ("latency=0.1@room-009", "no simulated device named 'room-009'"),
                        ("truncate@200%", "at most 100%")]:
        done = subprocess.run(serve_command(tmp_path, "--fault", spec,
                                            via_certfleet=via_certfleet),
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, done.stderr
        assert f"--fault {spec!r}" in done.stderr and words in done.stderr, done.stderr
        assert done.stdout == ""
    assert not (tmp_path / "state" / "devices").exists()  # nothing was started


# ------------------------------------------------------------------- ports kept


@pytest.mark.parametrize("down", ["offline", "reboot"])
async def test_a_device_that_is_down_keeps_its_port(sim: SimFleet, xapi_for: Any,
                                                    down: str) -> None:
    """While a device is off its port is held (bound, not listening): connections are
    refused and nothing else can take the port, so the device comes back where the
    inventory says it is. (Ports are ephemeral: an outgoing connection or another process
    binding port 0 used to take it, and the device moved.)"""
    port = sim.devices["room-001"].port
    if down == "offline":
        await sim.set_fault("room-001", offline=True)
    else:
        await sim.set_fault("room-001", slow_reboot=1.0)
        reboot = sim.servers["room-001"].boot("Restart")
        await asyncio.sleep(0.2)
    with pytest.raises(httpx.ConnectError):
        await xapi_for().client.get("/getxml?location=/Status")
    intruder = socket.socket()
    try:
        with pytest.raises(OSError):
            intruder.bind(("127.0.0.1", port))
    finally:
        intruder.close()
    if down == "offline":
        await sim.clear_faults("room-001")
    else:
        await reboot
    assert sim.devices["room-001"].port == port
    assert (await xapi_for().getxml("/Status/SystemUnit")).tag == "Status"
