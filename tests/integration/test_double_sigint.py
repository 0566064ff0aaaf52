"""A second SIGINT stops at once, and still leaves the run's record (issue 14 item 19): the
JSON document and the journal hold every device done so far, the devices cut off mid-way are
`failed` (kind `interrupted`, so `runs resume` and `@failed` take them up), exit 130."""

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

from certfleet.fleet.pki.local_ca import LocalCa


@pytest.fixture
def slow_sim(tmp_path: Path) -> Iterator[Any]:
    from certfleet.roomsim import SimFleetThread

    with SimFleetThread(tmp_path / "slow", devices=6, request_delay=0.3) as fleet:
        yield fleet


def test_a_second_sigint_stops_at_once_and_keeps_the_record(
    slow_sim: Any, corp_ca: tuple[LocalCa, Path], cli: Any
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "certfleet.cli.main", "push-ca", str(corp_ca[1]), "-i",
         str(slow_sim.inventory_path), "--parallel", "2", "-o", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.stderr.readline().startswith("[1/"):
            break
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    out, err = proc.communicate(timeout=60)
    assert time.monotonic() - started < 10  # at once: the devices in flight were not waited for
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    doc = json.loads(out)
    assert doc["interrupted"] is True and doc["exit_code"] == 130
    by_outcome: dict[str, list[dict[str, Any]]] = {}
    for device in doc["devices"]:
        by_outcome.setdefault(device["outcome"], []).append(device)
    assert len(doc["devices"]) == len(slow_sim.devices)
    assert by_outcome.get("changed")  # the device finished before the first SIGINT
    cut = by_outcome.get("failed", [])
    assert cut and all(d["error"]["kind"] == "interrupted" for d in cut)
    shown = cli("runs", "show", "last", "-o", "json").json()
    assert shown["status"] == "interrupted"
    rows = {d["device"]: d["outcome"] for d in shown["devices"]}
    assert {d["device"] for d in by_outcome["changed"] + cut} <= set(rows)
    assert all(rows[d["device"]] == "failed" for d in cut)
