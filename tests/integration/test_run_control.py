"""Run control against roomsim: waves, the failure budget (unreachable counted apart), the
journal lock, and a clean stop on SIGINT that `runs resume` finishes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from certfleet.fleet.journal import Journal
from certfleet.fleet.pki.local_ca import LocalCa


def test_waves_and_failure_budget(sim: Any, corp_ca: tuple[LocalCa, Path], cli: Any) -> None:
    names = list(sim.devices)
    sim.set_fault(names[0], garbage=True)  # fails in the first wave
    result = cli("push-ca", str(corp_ca[1]), "-i", str(sim.inventory_path), "--wave", "1,50%",
                 "--max-fail", "0", "-o", "json")
    assert result.exit_code == 3, result.output
    doc = result.json()
    assert doc["stopped_by_budget"] is True
    outcomes = {d["device"]: d for d in doc["devices"]}
    assert outcomes[names[0]]["outcome"] == "failed"
    for name in names[1:]:
        assert outcomes[name]["outcome"] == "skipped"
        assert "max-fail" in outcomes[name]["message"]
        assert not sim.devices[name].ca_list  # never touched


def test_unreachable_is_counted_apart(sim: Any, corp_ca: tuple[LocalCa, Path], cli: Any) -> None:
    names = list(sim.devices)
    sim.set_fault(names[0], offline=True)
    inv = str(sim.inventory_path)
    lenient = cli("push-ca", str(corp_ca[1]), "-i", inv, "--max-fail", "0", "--parallel", "1",
                  "-o", "json")
    assert lenient.exit_code == 1  # unreachable is not a failure for --max-fail
    assert lenient.json()["summary"]["changed"] == len(names) - 1
    strict = cli("push-ca", str(corp_ca[1]), "-i", inv, "--max-unreachable", "0",
                 "--parallel", "1", "-o", "json")
    assert strict.exit_code == 3
    assert strict.json()["summary"]["unreachable"] == 1


def test_bad_wave_and_budget_are_input_errors(sim: Any, corp_ca: tuple[LocalCa, Path],
                                              cli: Any) -> None:
    inv = str(sim.inventory_path)
    assert cli("push-ca", str(corp_ca[1]), "-i", inv, "--wave", "0").exit_code == 2
    assert cli("push-ca", str(corp_ca[1]), "-i", inv, "--wave", "x%").exit_code == 2
    assert cli("push-ca", str(corp_ca[1]), "-i", inv, "--max-fail", "-1").exit_code == 2
    assert cli("push-ca", str(corp_ca[1]), "-i", inv, "--max-fail", "150%").exit_code == 2


def test_two_changing_runs_cannot_share_a_journal(sim: Any, corp_ca: tuple[LocalCa, Path],
                                                  cli: Any) -> None:
    with Journal.open(os.environ["CERTFLEET_JOURNAL"]) as journal, journal.lock("certfleet rotate"):
        blocked = cli("push-ca", str(corp_ca[1]), "-i", str(sim.inventory_path))
        assert blocked.exit_code == 2
        assert "another certfleet run" in blocked.stderr and "certfleet rotate" in blocked.stderr
        # reading is never blocked
        assert cli("status", "-i", str(sim.inventory_path)).exit_code == 0
    assert cli("push-ca", str(corp_ca[1]), "-i", str(sim.inventory_path)).exit_code == 0


@pytest.fixture
def slow_sim(tmp_path: Path) -> Iterator[Any]:
    from certfleet.roomsim import SimFleetThread

    with SimFleetThread(tmp_path / "slow", devices=6, request_delay=0.2) as fleet:
        yield fleet


@pytest.mark.slow
def test_sigint_stops_cleanly_and_resume_finishes(slow_sim: Any, tmp_path: Path, cli: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    sim = slow_sim
    monkeypatch.setenv("CERTFLEET_CA_PASSPHRASE", "ca-pass-for-sigint-test")
    monkeypatch.setenv("CERTFLEET_JOURNAL_PASSPHRASE", "journal-pass-for-sigint-test")
    lab = tmp_path / "lab"
    assert cli("ca", "init", "--dir", str(lab), "--cn", "Lab CA").exit_code == 0
    inv = str(sim.inventory_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "certfleet.cli.main", "rotate", "-i", inv, "--purpose", "802.1X",
         "--signer", "local-ca", "--ca-dir", str(lab), "--parallel", "1", "-o", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if line.startswith("[1/"):
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    doc = json.loads(out)
    assert doc["interrupted"] is True
    outcomes = [d["outcome"] for d in doc["devices"]]
    assert outcomes.count("changed") >= 1
    assert "skipped" in outcomes
    assert all("interrupted by SIGINT" in d["message"] for d in doc["devices"]
               if d["outcome"] == "skipped")
    listed = cli("runs", "list", "-o", "json").json()["runs"]
    assert listed[0]["status"] == "interrupted"

    resumed = cli("runs", "resume", "last", "-o", "json")
    assert resumed.exit_code == 0, resumed.output
    assert resumed.json()["summary"]["changed"] == outcomes.count("skipped")
    for name, device in sim.devices.items():
        assert any("802.1X" in c.purposes for c in device.services), name
