"""The Webex cloud transport end to end, against roomsim's simulated cloud API (black box:
only its public SimFleet API is used): import the device list, push-ca and rotate through
it, offline devices, refused commands, forced 429s, and a mixed local + cloud inventory."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from certfleet.fleet.inventory import load_inventory

# Most tests here (all but the mixed inventory and the refused commands, which are short) serve
# the simulated cloud at a higher per-token limit than Webex's 300/min so they finish in a
# default test run's time; the sim writes (and import-webex is given) an
# api_rate_per_minute 7 % under it, the same margin certfleet's default (280) keeps under
# 300. What is proven — the pacer keeps a whole fleet under the server's sliding-window
# limit, so no 429 comes back — does not depend on the rate; the pacer at the real 280/min
# is covered with a fake clock in tests/unit/test_cloud_transport.py.
FAST_CLOUD = 6000
FAST_CLIENT = "5580"

CA_PASS = "ca-passphrase-for-cloud-tests-52"
JOURNAL_PASS = "journal-passphrase-for-cloud-tests-19"


@pytest.fixture
def cloud_sim(tmp_path: Path) -> Iterator[Any]:
    from certfleet.roomsim import SimFleetThread

    with SimFleetThread(tmp_path / "sim", devices=8, cloud=True,
                        cloud_rate_per_minute=FAST_CLOUD) as fleet:
        yield fleet


def import_webex(cli: Any, sim: Any, out: Path, *extra: str) -> Any:
    result = cli("inventory", "import-webex", "--api-url", sim.cloud_url,
                 "--token", f"file:{sim.state_dir}/cloud-token",
                 "--api-verify", f"ca:{sim.ca_pem_path}", "--out", str(out), *extra)
    assert result.exit_code == 0, result.output
    return result


def outcomes(result: Any) -> dict[str, str]:
    return {d["device"]: d["outcome"] for d in result.json()["devices"]}


def calls(result: Any) -> list[dict[str, Any]]:
    return [c for d in result.json()["devices"] for c in d["calls"]]


def test_import_push_ca_and_rotate_through_the_cloud(
    cloud_sim: Any, lab: Path, corp_ca: Any, tmp_path: Path, cli: Any
) -> None:
    sim = cloud_sim
    out = tmp_path / "webex.yaml"
    first = import_webex(cli, sim, out, "--page-size", "3", "--api-rate", FAST_CLIENT)
    assert "8 added, 0 updated, 0 kept" in first.stdout and "3 page(s)" in first.stdout
    inv = load_inventory(out)
    assert {d.device_id for d in inv.devices.values()} == {
        sim.cloud_device_id(name) for name in sim.devices}
    assert all(d.transport == "cloud" for d in inv.devices.values())

    _, ca_path = corp_ca
    pushed = cli("push-ca", "-i", str(out), str(ca_path), "-o", "json")
    assert pushed.exit_code == 0, pushed.output
    assert set(outcomes(pushed).values()) == {"changed"}
    assert all(d["transport"] == "cloud" for d in pushed.json()["devices"])
    again = cli("push-ca", "-i", str(out), str(ca_path), "-o", "json")
    assert again.exit_code == 0, again.output
    assert set(outcomes(again).values()) == {"ok"}

    rotated = cli("rotate", "-i", str(out), "--purpose", "802.1X", "--signer", "local-ca",
                  "--ca-dir", str(lab), "--renew-before", "400d", "-o", "json")
    assert rotated.exit_code == 0, rotated.output
    assert set(outcomes(rotated).values()) == {"changed"}
    for entry in rotated.json()["devices"]:
        new = entry["fingerprints"]["after"][0]
        services = sim.devices[entry["device"]].services
        assert any(c.fingerprint == new for c in services)
    quiet = cli("rotate", "-i", str(out), "--purpose", "802.1X", "--signer", "local-ca",
                "--ca-dir", str(lab), "--renew-before", "30d", "-o", "json")
    assert quiet.exit_code == 0, quiet.output
    assert set(outcomes(quiet).values()) == {"ok"}

    everything = (first.output + pushed.output + again.output + rotated.output + quiet.output
                  + out.read_text())
    for secret in (sim.cloud_token, CA_PASS, JOURNAL_PASS, "PRIVATE KEY"):
        assert secret not in everything
    assert not any(c.get("http_status") == 429 for c in calls(pushed) + calls(rotated))


def test_offline_devices_are_unreachable_and_the_rest_complete(
    cloud_sim: Any, corp_ca: Any, tmp_path: Path, cli: Any
) -> None:
    sim = cloud_sim
    out = tmp_path / "webex.yaml"
    import_webex(cli, sim, out, "--api-rate", FAST_CLIENT)
    names = {d.device_id: name for name, d in load_inventory(out).devices.items()}
    offline = next(iter(sim.devices))
    sim.set_cloud_offline(offline)
    offline_entry = names[sim.cloud_device_id(offline)]
    _, ca_path = corp_ca
    result = cli("push-ca", "-i", str(out), str(ca_path), "-o", "json")
    assert result.exit_code == 1, result.output
    entry = next(d for d in result.json()["devices"] if d["device"] == offline_entry)
    assert entry["outcome"] == "unreachable"
    assert "offline in Webex" in entry["error"]["message"]
    assert [c["kind"] for c in entry["calls"]] == ["session"]  # no command was sent
    added = {c["fingerprints"]["after"][-1] for c in result.json()["devices"]
             if c["outcome"] == "changed"}
    assert not {c.fingerprint for c in sim.devices[offline].ca_list} & added
    others = [d for d in result.json()["devices"] if d["device"] != offline_entry]
    assert {d["outcome"] for d in others} == {"changed"}


def test_forced_429s_are_waited_out_and_every_device_completes(
    cloud_sim: Any, corp_ca: Any, tmp_path: Path, cli: Any
) -> None:
    sim = cloud_sim
    out = tmp_path / "webex.yaml"
    import_webex(cli, sim, out, "--api-rate", FAST_CLIENT)
    _, ca_path = corp_ca
    sim.force_429(4, "2")
    started = time.monotonic()
    result = cli("push-ca", "-i", str(out), str(ca_path), "-o", "json")
    took = time.monotonic() - started
    assert result.exit_code == 0, result.output
    assert set(outcomes(result).values()) == {"changed"}
    retried = [c for c in calls(result) if c.get("attempts", 1) > 1]
    assert retried, "the forced 429s were not seen"
    assert took >= 2  # the Retry-After was honoured
    # an HTML-bodied 429 (not JSON): its Retry-After still counts
    sim.force_429(1, "1", html=True)
    again = cli("push-ca", "-i", str(out), str(ca_path), "-o", "json")
    assert again.exit_code == 0, again.output
    assert set(outcomes(again).values()) == {"ok"}


def test_a_mixed_local_and_cloud_inventory(
    tmp_path: Path, corp_ca: Any, cli: Any
) -> None:
    from certfleet.roomsim import SimFleetThread

    with SimFleetThread(tmp_path / "sim", devices=4, cloud=True) as sim:
        # the simulator's own local inventory, with the cloud devices merged in
        inv = yaml.safe_load(sim.inventory_path.read_text())
        inv["defaults"]["verify"] = f"ca:{sim.ca_pem_path}"
        out = tmp_path / "mixed.yaml"
        out.write_text(yaml.safe_dump(inv))
        merged = import_webex(cli, sim, out)
        assert "4 added, 0 updated, 4 kept" in merged.stdout
        assert "cloud settings in groups.webex" in merged.stdout
        loaded = load_inventory(out)
        assert sorted(d.transport for d in loaded.devices.values()) == ["cloud"] * 4 + \
            ["local"] * 4
        _, ca_path = corp_ca
        result = cli("push-ca", "-i", str(out), str(ca_path), "-o", "json")
        assert result.exit_code == 0, result.output
        by_transport: dict[str, set[str]] = {}
        for entry in result.json()["devices"]:
            by_transport.setdefault(entry["transport"], set()).add(entry["outcome"])
        # each simulated device is reached twice: whichever comes first adds the CA
        assert set(by_transport) == {"local", "cloud"}
        assert by_transport["local"] | by_transport["cloud"] <= {"changed", "ok"}


def test_commands_the_cloud_refuses_fail_with_its_reply(
    tmp_path: Path, corp_ca: Any, cli: Any
) -> None:
    from certfleet.roomsim import SimFleetThread

    with SimFleetThread(tmp_path / "sim", devices=2, cloud=True,
                        cloud_disallowed_commands=("Security.Certificates.CA.Add",)) as sim:
        out = tmp_path / "webex.yaml"
        import_webex(cli, sim, out)
        _, ca_path = corp_ca
        result = cli("push-ca", "-i", str(out), str(ca_path), "-o", "json")
        assert result.exit_code == 1
        for entry in result.json()["devices"]:
            assert entry["outcome"] == "failed"
            assert entry["error"]["kind"] == "command"
            assert "not available through the Webex cloud xAPI" in entry["error"]["message"]
            assert entry["error"]["xpath"] == "Security/Certificates/CA/Add"




@pytest.mark.slow
@pytest.mark.parametrize(("devices", "page_size"), [
    pytest.param(40, "15", id="40-devices"),
    pytest.param(250, "100", id="250-devices", marks=pytest.mark.long),  # 100: the default
])
def test_many_devices_import_push_ca_and_rotate(
    tmp_path: Path, lab: Path, corp_ca: Any, cli: Any, devices: int, page_size: str
) -> None:
    from certfleet.roomsim import SimFleetThread

    with SimFleetThread(tmp_path / "sim", devices=devices, cloud=True,
                        cloud_rate_per_minute=FAST_CLOUD) as sim:
        out = tmp_path / "webex.yaml"
        imported = import_webex(cli, sim, out, "--api-rate", FAST_CLIENT,
                                "--page-size", page_size)
        assert f"{devices} added" in imported.stdout and "3 page(s)" in imported.stdout
        inv = load_inventory(out)
        assert len(inv.devices) == devices
        assert {d.api_rate_per_minute for d in inv.devices.values()} == {float(FAST_CLIENT)}
        _, ca_path = corp_ca
        pushed = cli("push-ca", "-i", str(out), str(ca_path), "-o", "json")
        assert pushed.exit_code == 0, pushed.output
        assert set(outcomes(pushed).values()) == {"changed"}
        again = cli("push-ca", "-i", str(out), str(ca_path), "-o", "json")
        assert again.exit_code == 0, again.output
        assert set(outcomes(again).values()) == {"ok"}
        # HTTPS through the cloud: no address to shake hands with, so the new certificate is
        # checked in the device's services list (it must not be rolled back for want of one)
        rotated = cli("rotate", "-i", str(out), "--purpose", "HTTPS", "--signer", "local-ca",
                      "--ca-dir", str(lab), "--renew-before", "400d", "-o", "json")
        assert rotated.exit_code == 0, rotated.output
        assert set(outcomes(rotated).values()) == {"changed"}
        for entry in rotated.json()["devices"]:
            new = entry["fingerprints"]["after"][0]
            in_use = [c for c in sim.devices[entry["device"]].services if "HTTPS" in c.purposes]
            assert [c.fingerprint for c in in_use] == [new]
        # the client's pacer kept the run under the API's limit: no 429 at all
        assert not any(c.get("http_status") == 429
                       for c in calls(pushed) + calls(again) + calls(rotated))


@pytest.mark.slow
@pytest.mark.parametrize("devices", [
    pytest.param(100, id="100-devices"),
    pytest.param(500, id="500-devices", marks=pytest.mark.long),
])
def test_the_pacer_alone_never_meets_a_429(
    tmp_path: Path, corp_ca: Any, cli: Any, devices: int
) -> None:
    from certfleet.roomsim import SimFleetThread

    with SimFleetThread(tmp_path / "sim", devices=devices, cloud=True,
                        cloud_rate_per_minute=9000) as sim:
        inventory = sim.write_inventory(tmp_path / "cloud.yaml", cloud=True)
        assert "api_rate_per_minute: 8370" in inventory.read_text()
        _, ca_path = corp_ca
        started = time.monotonic()
        pushed = cli("push-ca", "-i", str(inventory), str(ca_path), "-o", "json",
                     "--parallel", "100")
        elapsed = time.monotonic() - started
        assert pushed.exit_code == 0, pushed.output
        assert set(outcomes(pushed).values()) == {"changed"}
        sent = calls(pushed)
        assert not any(c.get("http_status") == 429 for c in sent)
        # and the pacer is what kept it there: the run took at least as long as its rate
        # allows for the requests it made (less the initial burst)
        assert elapsed >= (len(sent) - 10) / (8370 / 60) * 0.95


@pytest.mark.slow
def test_sim_serve_cloud_from_another_shell(tmp_path: Path) -> None:
    """`certfleet sim serve --cloud` in one process, `certfleet import-webex` + `push-ca`
    through the simulated cloud in others (the issue's set-up, as a user types it)."""
    import json
    import os
    import signal
    import subprocess
    import sys

    from certfleet.fleet.pki.local_ca import create_ca

    cmd = [sys.executable, "-m", "certfleet.cli.main"]
    state = tmp_path / "state"
    server = subprocess.Popen(
        [*cmd, "sim", "serve", "--devices", "12", "--state", str(state), "--cloud",
         "--cloud-rate", "3000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTFLEET_")
           and k.lower() not in ("https_proxy", "all_proxy")}
    env["CERTFLEET_JOURNAL"] = os.environ["CERTFLEET_JOURNAL"]
    try:
        assert server.stdout is not None and server.stderr is not None
        assert server.stdout.readline().strip() == "ready"
        banner = server.stderr.readline() + server.stderr.readline()
        api_url = banner.split("Webex cloud API at ", 1)[1].split()[0]
        out = tmp_path / "webex.yaml"
        imported = subprocess.run(
            [*cmd, "inventory", "import-webex", "--api-url", api_url,
             "--token", f"file:{state / 'cloud-token'}", "--api-verify",
             f"ca:{state / 'sim-ca.pem'}", "--api-rate", "2790", "--page-size", "5",
             "--out", str(out)],
            capture_output=True, text=True, env=env, timeout=120, check=False)
        assert imported.returncode == 0, imported.stderr
        assert "12 added" in imported.stdout and "3 page(s)" in imported.stdout
        ca = create_ca("Shell Root CA", organization="Example")
        ca_file = tmp_path / "root.pem"
        ca_file.write_text(ca.cert_pem)
        pushed = subprocess.run([*cmd, "-i", str(out), "push-ca", str(ca_file), "-o", "json"],
                                capture_output=True, text=True, env=env, timeout=120,
                                check=False)
        assert pushed.returncode == 0, pushed.stderr
        doc = json.loads(pushed.stdout)
        assert doc["summary"]["changed"] == 12
        assert {d["transport"] for d in doc["devices"]} == {"cloud"}
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=20) == 0
