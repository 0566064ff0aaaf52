"""enroll --scep, renewal profiles, dot1x and wifi against roomsim, whose devices enroll with
the real SCEP server from Debian's `scep` package."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from certfleet.fleet.pki.certs import fingerprint


def device_snapshot(device: Any) -> tuple[Any, ...]:
    return (
        sorted(c.fingerprint for c in device.services),
        sorted(str(c) for c in device.ca_list),
        [dict(p) for p in device.profiles],
        dict(device.config),
    )


@pytest.fixture
def sim20(tmp_path: Path) -> Iterator[Any]:
    from certfleet.roomsim import SimFleetThread

    with SimFleetThread(tmp_path / "sim20", devices=20) as fleet:
        yield fleet


def enroll_inventory(sim: Any, tmp_path: Path) -> str:
    inv = yaml.safe_load(sim.inventory_path.read_text())
    inv["defaults"]["certificate"] = {"key": "rsa-2048", "subject": {"O": "Example", "C": "NO"},
                                      "san_dns": ["{name}.rooms.example"]}
    path = tmp_path / "enroll.yaml"
    path.write_text(yaml.safe_dump(inv))
    return str(path)


def enroll_args(scep: Any, inv: str, *extra: str) -> list[str]:
    return ["enroll", "-i", inv, "--scep", scep.url, "--ca-fingerprint", scep.ca_sha256,
            "--challenge", "env:TEST_SCEP_CHALLENGE", "--purpose", "802.1X", *extra,
            "-o", "json"]


@pytest.mark.slow
def test_enroll_twenty_then_dot1x(sim20: Any, scep_server: Any, tmp_path: Path, cli: Any,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    sim = sim20
    monkeypatch.setenv("TEST_SCEP_CHALLENGE", scep_server.challenge)
    inv = enroll_inventory(sim, tmp_path)
    ca = x509.load_pem_x509_certificate(scep_server.ca_pem.read_bytes())
    ca_sha1 = fingerprint(ca)

    # before enrollment, dot1x refuses every device: no 802.1X certificate, it would strand them
    refused = cli("dot1x", "-i", inv, "-o", "json")
    assert refused.exit_code == 1
    assert all(d["error"]["kind"] == "certificate-check" for d in refused.json()["devices"])

    result = cli(*enroll_args(scep_server, inv, "--renewal-profile"))
    assert result.exit_code == 0, result.output
    assert result.json()["summary"]["changed"] == 20
    for name, device in sim.devices.items():
        dot1x = [c for c in device.services if "802.1X" in c.purposes]
        assert len(dot1x) == 1, name
        assert dot1x[0].cert.issuer == ca.subject
        assert ca_sha1 in {c.fingerprint for c in device.ca_list}
        assert len(device.profiles) == 1
    assert scep_server.challenge not in result.output

    again = cli(*enroll_args(scep_server, inv, "--renewal-profile"))
    assert again.exit_code == 0
    assert again.json()["summary"]["ok"] == 20

    listed = cli("renewal", "list", "-i", inv, "-o", "json")
    assert listed.exit_code == 0
    profiles = [p for d in listed.json()["devices"] for p in d["facts"]["profiles"]]
    assert len(profiles) == 20 and {p["fingerprint"] for p in profiles} == {ca_sha1}

    status = cli("status", "-i", inv, "-o", "json")
    for entry in status.json()["devices"]:
        enrolled = [c for c in entry["facts"]["certificates"] if "802.1X" in c["purposes"]]
        assert enrolled[0]["renewal_profile"] == ca_sha1

    # one device loses its enrolled certificate: dot1x refuses it, turns on the other 19
    victim = list(sim.devices)[4]
    sim.devices[victim].services[:] = [c for c in sim.devices[victim].services
                                       if "802.1X" not in c.purposes]
    on = cli("dot1x", "-i", inv, "-o", "json")
    assert on.exit_code == 1
    by_name = {d["device"]: d for d in on.json()["devices"]}
    assert by_name[victim]["outcome"] == "failed"
    assert "no certificate is active for 802.1X" in by_name[victim]["error"]["message"]
    for name, entry in by_name.items():
        if name == victim:
            assert sim.devices[name].config["Network[1]/IEEE8021X/Mode"] == "Off"
            continue
        assert entry["outcome"] == "changed", entry
        assert entry["facts"]["ieee8021x"]["status"] == "Connected"
        assert sim.devices[name].config["Network[1]/IEEE8021X/Mode"] == "On"


def test_enroll_failures_change_nothing(sim: Any, scep_server: Any, tmp_path: Path, cli: Any,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    inv = enroll_inventory(sim, tmp_path)
    names = list(sim.devices)
    before = {n: device_snapshot(d) for n, d in sim.devices.items()}

    monkeypatch.setenv("TEST_SCEP_CHALLENGE", "not-the-challenge-42")
    wrong = cli(*enroll_args(scep_server, inv, "--limit", names[0]))
    assert wrong.exit_code == 1
    error = wrong.json()["devices"][0]["error"]
    assert "badRequest" in error["message"] or "rejected" in error["message"]
    assert "not-the-challenge-42" not in wrong.output

    monkeypatch.setenv("TEST_SCEP_CHALLENGE", scep_server.challenge)
    bad_fp = cli("enroll", "-i", inv, "--scep", scep_server.url, "--ca-fingerprint", "ab" * 32,
                 "--challenge", "env:TEST_SCEP_CHALLENGE", "--limit", names[1], "-o", "json")
    assert bad_fp.exit_code == 1
    error = bad_fp.json()["devices"][0]["error"]
    assert error["kind"] == "scep" and "fingerprint mismatch" in error["message"]

    unreachable = cli("enroll", "-i", inv, "--scep", "http://127.0.0.1:9/scep",
                      "--ca-fingerprint", scep_server.ca_sha256, "--challenge",
                      "env:TEST_SCEP_CHALLENGE", "--limit", names[2], "-o", "json")
    assert unreachable.exit_code == 1
    error = unreachable.json()["devices"][0]["error"]
    assert "unreachable" in error["message"]

    sim.set_fault(names[3], latency=5.0)
    slow = cli(*enroll_args(scep_server, inv, "--limit", names[3], "--device-timeout", "2"))
    assert slow.exit_code == 1
    assert slow.json()["devices"][0]["error"]["kind"] == "timeout"
    sim.clear_faults(names[3])

    assert {n: device_snapshot(d) for n, d in sim.devices.items()} == before
    assert scep_server.challenge not in (wrong.output + bad_fp.output + unreachable.output
                                         + slow.output)


def test_wifi_guard_and_allow_missing_ca(sim: Any, scep_server: Any, tmp_path: Path, cli: Any,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_SCEP_CHALLENGE", scep_server.challenge)
    inv = enroll_inventory(sim, tmp_path)
    names = list(sim.devices)
    refused = cli("wifi", "-i", inv, "--ssid", "corp", "--limit", names[0], "-o", "json")
    assert refused.exit_code == 1
    assert refused.json()["devices"][0]["error"]["kind"] == "certificate-check"

    assert cli(*enroll_args(scep_server, inv, "--limit", names[0])).exit_code == 0
    ok = cli("wifi", "-i", inv, "--ssid", "corp", "--limit", names[0], "-o", "json")
    assert ok.exit_code == 0, ok.output
    entry = ok.json()["devices"][0]
    assert entry["outcome"] == "changed"
    assert entry["facts"]["wifi"]["Status"] == "Connected"

    loose = cli("wifi", "-i", inv, "--ssid", "guest", "--allow-missing-ca", "--limit", names[0])
    assert "NOT validate" in loose.stderr


def test_push_ca_sync_to_peripherals(sim: Any, corp_ca: Any, cli: Any) -> None:
    inv = str(sim.inventory_path)
    result = cli("push-ca", str(corp_ca[1]), "-i", inv, "--sync-to-peripherals", "off",
                 "-o", "json")
    assert result.exit_code == 0, result.output
    for name, device in sim.devices.items():
        assert device.config["Peripherals/Security/Certificates/SyncToPeripherals/Enabled"] \
            == "False", name
    entry = result.json()["devices"][0]
    assert "reboot" in entry["message"]
    again = cli("push-ca", str(corp_ca[1]), "-i", inv, "--sync-to-peripherals", "off",
                "-o", "json")
    assert again.json()["summary"]["ok"] == len(sim.devices)


def test_enroll_with_reboot_waits_until_back(tmp_path: Path, scep_server: Any, cli: Any,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from certfleet.roomsim import SimFleetThread

    monkeypatch.setenv("TEST_SCEP_CHALLENGE", scep_server.challenge)
    with SimFleetThread(tmp_path / "reboot-sim", devices=3, reboot_seconds=2.0) as sim:
        inv = enroll_inventory(sim, tmp_path)
        result = cli(*enroll_args(scep_server, inv, "--reboot", "--wave", "1"))
        assert result.exit_code == 0, result.output
        for entry in result.json()["devices"]:
            actions = [s["action"] for s in entry["steps"]]
            assert "reboot" in actions
            assert all(s["applied"] for s in entry["steps"])
        for device in sim.devices.values():
            assert any("802.1X" in c.purposes for c in device.services)
            assert device.uptime < 60
