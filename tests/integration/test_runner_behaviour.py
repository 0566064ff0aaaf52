"""The runner against roomsim: per-device time budget, bounded parallelism, progress lines,
and no secret in any output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from certfleet.fleet.pki.local_ca import LocalCa


def test_slow_device_times_out_alone(sim: Any, cli: Any) -> None:
    names = list(sim.devices)
    sim.set_fault(names[0], latency=30.0)
    result = cli("status", "-i", str(sim.inventory_path), "--device-timeout", "3", "-o", "json")
    assert result.exit_code == 1
    by_name = {d["device"]: d for d in result.json()["devices"]}
    assert by_name[names[0]]["outcome"] == "failed"
    assert by_name[names[0]]["error"]["kind"] == "timeout"
    assert "3s" in by_name[names[0]]["error"]["message"]
    assert all(by_name[n]["outcome"] == "ok" for n in names[1:])
    # the others did not wait for the slow one
    assert all(by_name[n]["duration_ms"] < 3000 for n in names[1:])


def test_a_timed_out_device_names_the_call_in_flight(sim: Any, cli: Any) -> None:
    name = next(iter(sim.devices))
    sim.set_fault(name, latency=1.2)  # logs in and reads its release, then runs out of time
    result = cli("status", "-i", str(sim.inventory_path), "--limit", name,
                 "--device-timeout", "3", "-o", "json")
    assert result.exit_code == 1
    [device] = result.json()["devices"]
    assert device["error"]["kind"] == "timeout"
    in_flight = [c["path"] for c in device["calls"] if c.get("interrupted")]
    assert in_flight and device["error"]["xpath"] == in_flight[-1]


def test_plain_progress_lines_on_stderr(sim: Any, cli: Any) -> None:
    result = cli("status", "-i", str(sim.inventory_path), "-o", "json", "--parallel", "1")
    assert result.exit_code == 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("[")]
    assert len(lines) == len(sim.devices)
    assert lines[0].startswith("[1/5] ") and lines[-1].startswith("[5/5] ")
    # with one worker the devices are done in inventory order
    assert [line.split()[1] for line in lines] == list(sim.devices)


def test_no_secret_in_any_output(sim: Any, corp_ca: tuple[LocalCa, Path], cli: Any) -> None:
    inv = str(sim.inventory_path)
    names = list(sim.devices)
    sim.set_fault(names[1], garbage=True)
    outputs = [
        cli("status", "-i", inv),
        cli("status", "-i", inv, "-o", "json"),
        cli("push-ca", str(corp_ca[1]), "-i", inv),
        cli("push-ca", str(corp_ca[1]), "-i", inv, "-o", "json"),
        cli("inventory", "list", "-i", inv, "-o", "json"),
        cli("inventory", "check", "-i", inv),
    ]
    assert sim.password
    for result in outputs:
        assert sim.password not in result.output


def test_limit_failed_reruns_what_failed(sim: Any, corp_ca: tuple[LocalCa, Path], cli: Any) -> None:
    inv = str(sim.inventory_path)
    names = list(sim.devices)
    sim.set_fault(names[3], offline=True)
    first = cli("push-ca", str(corp_ca[1]), "-i", inv, "-o", "json")
    assert first.exit_code == 1
    sim.clear_faults(names[3])
    again = cli("push-ca", str(corp_ca[1]), "-i", inv, "--limit", "@failed", "-o", "json")
    assert again.exit_code == 0, again.output
    assert [d["device"] for d in again.json()["devices"]] == [names[3]]
    assert again.json()["devices"][0]["outcome"] == "changed"
    shown = cli("runs", "show", "last", "-o", "json")
    assert shown.exit_code == 0
    assert shown.json()["devices"][0]["device"] == names[3]
    listed = cli("runs", "list")
    assert listed.exit_code == 0 and "push-ca" in listed.stdout


def test_limit_failed_without_history_is_an_input_error(sim: Any, cli: Any) -> None:
    result = cli("status", "-i", str(sim.inventory_path), "--limit", "@failed")
    assert result.exit_code == 2
    assert "no previous run" in result.stderr
