"""Output for CI: NDJSON events, JUnit files, stable shards, quiet runs."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from certfleet.fleet.pki.local_ca import LocalCa
from certfleet.fleet.shard import shard_of


def test_ndjson_events_as_the_run_goes(sim: Any, corp_ca: tuple[LocalCa, Path], cli: Any) -> None:
    result = cli("push-ca", str(corp_ca[1]), "-i", str(sim.inventory_path), "-o", "ndjson")
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert all(e["schema"] == "certfleet/event/v1" for e in events)
    kinds = [e["event"] for e in events]
    assert kinds.count("device-started") == kinds.count("device-finished") == len(sim.devices)
    assert kinds[-1] == "run-finished"
    assert events[-1]["summary"]["changed"] == len(sim.devices)
    finished = [e for e in events if e["event"] == "device-finished"]
    assert {e["result"]["device"] for e in finished} == set(sim.devices)
    assert result.stderr == ""  # no progress lines mixed in


def test_junit_one_case_per_device_and_step(sim: Any, corp_ca: tuple[LocalCa, Path], cli: Any,
                                            tmp_path: Path) -> None:
    names = list(sim.devices)
    sim.set_fault(names[1], action_error=True)
    report = tmp_path / "junit.xml"
    result = cli("--junit", str(report), "push-ca", str(corp_ca[1]), "-i",
                 str(sim.inventory_path))
    assert result.exit_code == 1
    suite = ET.parse(report).getroot().find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    device_cases = {c.get("name"): c for c in cases if " / " not in (c.get("name") or "")}
    assert set(device_cases) == set(names)
    step_cases = [c for c in cases if " / " in (c.get("name") or "")]
    # one ca.add step per device that got as far as planning (the failing one fails reading)
    assert len(step_cases) == len(names) - 1
    failure = device_cases[names[1]].find("failure")
    assert failure is not None and "No action detected" in (failure.get("message") or "")
    assert suite.get("failures") == "1"
    assert device_cases[names[0]].find("failure") is None


def test_shards_cover_the_fleet_exactly_once(sim: Any, cli: Any) -> None:
    seen: list[str] = []
    for k in (1, 2, 3):
        result = cli("--shard", f"{k}/3", "inventory", "list", "-i", str(sim.inventory_path),
                     "-o", "json")
        assert result.exit_code == 0
        names = [d["name"] for d in result.json()["devices"]]
        assert all(shard_of(n, 3) == k for n in names)
        seen += names
    assert sorted(seen) == sorted(sim.devices)
    assert cli("--shard", "4/3", "inventory", "list", "-i", str(sim.inventory_path)).exit_code == 2


def test_quiet_prints_nothing_on_success(sim: Any, cli: Any) -> None:
    result = cli("--quiet", "status", "-i", str(sim.inventory_path))
    assert result.exit_code == 0
    assert result.stdout == "" and result.stderr == ""


HOOK = """
import os, sys
with open(sys.argv[1], "a") as log:
    log.write(",".join([os.environ["CERTFLEET_DEVICE"], os.environ["CERTFLEET_OUTCOME"],
                        os.environ["CERTFLEET_VERB"], os.environ["CERTFLEET_NEW_FINGERPRINTS"]]) + "\\n")
sys.exit(3 if os.environ["CERTFLEET_DEVICE"] == sys.argv[2] else 0)
"""


def test_hooks_run_per_device_and_a_failing_hook_fails_the_device(
    sim: Any, corp_ca: tuple[LocalCa, Path], cli: Any, tmp_path: Path
) -> None:
    import sys

    names = list(sim.devices)
    script = tmp_path / "hook.py"
    script.write_text(HOOK)
    log = tmp_path / "hook.log"
    sim.set_fault(names[4], offline=True)
    result = cli("--on-changed", f"{sys.executable} {script} {log} {names[2]}",
                 "--on-failed", f"{sys.executable} {script} {log} none",
                 "push-ca", str(corp_ca[1]), "-i", str(sim.inventory_path), "-o", "json")
    assert result.exit_code == 1
    by_name = {d["device"]: d for d in result.json()["devices"]}
    assert by_name[names[2]]["outcome"] == "failed"
    assert by_name[names[2]]["error"]["kind"] == "hook"
    assert "exit 3" in by_name[names[2]]["error"]["message"]
    assert by_name[names[0]]["outcome"] == "changed"
    lines = sorted(log.read_text().splitlines())
    assert len(lines) == len(names)
    assert any(line.startswith(f"{names[4]},unreachable,push-ca") for line in lines)
    assert any(line.startswith(f"{names[0]},changed,push-ca,") for line in lines)


def test_status_as_prometheus_textfile(sim: Any, cli: Any) -> None:
    names = list(sim.devices)
    sim.set_fault(names[0], offline=True)
    result = cli("status", "-i", str(sim.inventory_path), "-o", "prometheus")
    assert result.exit_code == 1  # one device unreachable
    text = result.stdout
    assert "# TYPE certfleet_certificate_days_left gauge" in text
    https = [line for line in text.splitlines()
             if line.startswith("certfleet_certificate_days_left{") and 'purpose="HTTPS"' in line]
    assert len(https) == len(names) - 1
    assert f'certfleet_device_up{{device="{names[0]}"}} 0' in text
    assert f'certfleet_device_up{{device="{names[1]}"}} 1' in text
    info = [line for line in text.splitlines() if line.startswith("certfleet_device_info{")]
    assert len(info) == len(names) - 1
    assert all('roomos="26.4.1.5"' in line and 'product="Cisco ' in line for line in info)
    for line in text.splitlines():
        if line and not line.startswith("#"):
            float(line.rsplit(" ", 1)[1])  # every sample has a number
    bad = cli("push-ca", "x.pem", "-i", str(sim.inventory_path), "-o", "prometheus")
    assert bad.exit_code == 2


def test_devices_are_changed_only_inside_a_window(sim: Any, corp_ca: tuple[LocalCa, Path],
                                                  cli: Any) -> None:
    import datetime as dt

    now = dt.datetime.now(dt.UTC)
    # a one-hour window that opened an hour ago on today's weekday (closed now, UTC)
    day = now.strftime("%a")
    start = (now - dt.timedelta(hours=2)).strftime("%H:%M")
    end = (now - dt.timedelta(hours=1)).strftime("%H:%M")
    closed = f"{day} {start}-{end} UTC"
    inv = str(sim.inventory_path)
    shut = cli("--window", closed, "push-ca", str(corp_ca[1]), "-i", inv, "-o", "json")
    assert shut.exit_code == 0
    assert shut.json()["summary"]["skipped"] == len(sim.devices)
    assert "outside the maintenance windows" in shut.json()["devices"][0]["message"]
    assert all(not d.ca_list for d in sim.devices.values())
    open_ = cli("--window", "daily 00:00-24:00", "push-ca", str(corp_ca[1]), "-i", inv,
                "-o", "json")
    assert open_.json()["summary"]["changed"] == len(sim.devices)
    assert cli("--window", "Sat 05:00-05:00", "status", "-i", inv).exit_code == 2
