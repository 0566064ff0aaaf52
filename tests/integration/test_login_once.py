"""A wrong password is tried once: whatever fault a device shows, no device sees more than one
failed login in one run — over the local HTTPS xAPI with sessions, with the basic-auth fallback
(every request carries the credentials), and over the WebSocket. Against roomsim, which counts
every refused login per device."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from certfleet.fleet.errors import DeviceError
from certfleet.fleet.inventory import Device, load_inventory
from certfleet.fleet.secrets import Secret
from certfleet.fleet.xapi._config import RetryPolicy, Timeouts, ssl_context_for
from certfleet.fleet.xapi._login import LoginGuard
from certfleet.fleet.xapi.commands import Xapi
from certfleet.fleet.xapi.local import LocalClients, LocalTransport
from certfleet.fleet.xapi.websocket import WebSocketTransport

FAST = RetryPolicy(attempts=4, base=0.01, cap=0.05)

#: every fault roomsim has, alone and (basic-auth devices) with the fallback
FAULTS: dict[str, dict[str, Any]] = {
    "truncate": {"truncate": True},
    "drop": {"drop": True},
    "storm_503": {"storm_503": 2},
    "offline_after": {"offline_after": 1},
    "offline": {"offline": True},
    "latency": {"latency": 0.2},
    "http_status": {"http_status": 500},
    "garbage": {"garbage": True},
    "hostile_xml": {"hostile_xml": "laughs"},
    "action_error": {"action_error": True},
    "reject_certificates": {"reject_certificates": True},
    "slow_reboot": {"slow_reboot": 1.0},
    "no_sessions": {"no_sessions": True},
    "no_sessions+truncate": {"no_sessions": True, "truncate": True},
    "no_sessions+drop": {"no_sessions": True, "drop": True},
    "no_sessions+storm_503": {"no_sessions": True, "storm_503": 2},
    "no_sessions+offline_after": {"no_sessions": True, "offline_after": 2},
}


@pytest.fixture
def faulty_sim(tmp_path: Path) -> Any:
    from certfleet.roomsim import SimFleetThread

    with SimFleetThread(tmp_path / "sim", devices=len(FAULTS), basic_rate=1000.0) as fleet:
        for name, faults in zip(sorted(fleet.devices), FAULTS.values(), strict=True):
            fleet.set_fault(name, **faults)
        yield fleet


def wrong_inventory(sim: Any, tmp_path: Path, **defaults: Any) -> Path:
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-password\n")
    wrong.chmod(0o600)
    inv = yaml.safe_load(sim.inventory_path.read_text())
    inv["defaults"].update(password=f"file:{wrong}", **defaults)
    path = tmp_path / f"wrong-{len(list(tmp_path.iterdir()))}.yaml"
    path.write_text(yaml.safe_dump(inv))
    return path


def failed_logins(sim: Any) -> dict[str, int]:
    names = sorted(sim.devices)
    return {fault: sim.devices[name].failed_logins for fault, name in zip(FAULTS, names,
                                                                           strict=True)}


@pytest.mark.parametrize("transport", ["local", "websocket"])
def test_a_wrong_password_is_one_failed_login_per_device_under_every_fault(
    faulty_sim: Any, tmp_path: Path, cli: Any, transport: str
) -> None:
    inventory = wrong_inventory(faulty_sim, tmp_path, transport=transport)
    result = cli("status", "-i", str(inventory), "-o", "json", "--device-timeout", "30")
    assert result.exit_code == 1, result.output
    assert all(d["outcome"] in ("failed", "unreachable") for d in result.json()["devices"])
    seen = failed_logins(faulty_sim)
    assert {fault: n for fault, n in seen.items() if n > 1} == {}, seen
    # the faults that answer at all still let the one login through to be refused
    assert seen["truncate"] == 1 and seen["latency"] == 1
    assert "not-the-password" not in result.output


def device_of(sim: Any, tmp_path: Path, fault: str) -> Device:
    name = sorted(sim.devices)[list(FAULTS).index(fault)]
    return load_inventory(wrong_inventory(sim, tmp_path)).devices[name]


@pytest.mark.parametrize("basic", [False, True], ids=["session", "basic-auth"])
async def test_a_login_whose_answer_times_out_is_not_sent_again(
    faulty_sim: Any, tmp_path: Path, basic: bool
) -> None:
    # The device takes longer than the read timeout: the login reached it and counted there.
    # With basic auth, the first xAPI request is the login (the session begin answered 404).
    device = device_of(faulty_sim, tmp_path, "no_sessions" if basic else "latency")
    faulty_sim.set_fault(device.name, latency=0.0 if basic else 0.6)
    client = LocalClients(timeouts=Timeouts(read=0.2)).device_client(device.verify)
    transport = LocalTransport(device, client, Secret("not-the-password"), retry=FAST,
                               owns_client=True)
    started = time.monotonic()
    with pytest.raises(DeviceError) as info:
        async with transport:
            faulty_sim.set_fault(device.name, latency=0.6)
            await Xapi(transport).ca_show()
    assert info.value.kind == "timeout"
    assert "not sent again" in info.value.message
    time.sleep(1.0)  # let the device finish the request it is still working on
    assert faulty_sim.devices[device.name].failed_logins == 1
    assert time.monotonic() - started < 5


async def test_a_websocket_login_whose_answer_times_out_is_not_sent_again(
    faulty_sim: Any, tmp_path: Path
) -> None:
    device = device_of(faulty_sim, tmp_path, "latency")
    faulty_sim.set_fault(device.name, latency=0.6)
    transport = WebSocketTransport(device, Secret("not-the-password"),
                                   ssl_context=ssl_context_for(device.verify),
                                   timeouts=Timeouts(read=0.2), retry=FAST)
    with pytest.raises(DeviceError) as info:
        async with transport:
            pass
    assert "not sent again" in info.value.message
    time.sleep(1.0)
    assert faulty_sim.devices[device.name].failed_logins == 1


async def test_a_second_transport_in_the_run_does_not_send_a_refused_or_lost_login(
    faulty_sim: Any, tmp_path: Path
) -> None:
    # One guard per device for the run: another entry or transport to the same device is
    # refused before anything is sent.
    device = device_of(faulty_sim, tmp_path, "truncate")
    guard = LoginGuard("admin@device")
    clients = LocalClients(timeouts=Timeouts(read=2.0))
    for _ in range(2):
        with pytest.raises(DeviceError):
            async with LocalTransport(device, clients.device_client(device.verify),
                                      Secret("not-the-password"), retry=FAST,
                                      owns_client=True, login=guard):
                pass
    with pytest.raises(DeviceError) as info:
        async with WebSocketTransport(device, Secret("not-the-password"),
                                      ssl_context=ssl_context_for(device.verify),
                                      retry=FAST, login=guard):
            pass
    assert "earlier in this run" in info.value.message
    assert faulty_sim.devices[device.name].failed_logins == 1
