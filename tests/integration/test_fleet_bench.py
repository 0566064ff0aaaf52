"""bench/fleet_bench.py runs end to end on a tiny fleet: every row measures a run in which every
device succeeded, and the JSON has the documented shape. No timing is asserted."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "fleet_bench.py"


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fleet_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fleet_bench"] = module
    spec.loader.exec_module(module)
    return module


def test_ideal_bound_follows_the_device_limits() -> None:
    bench = load_bench()
    # a session: 15 req/s with a burst of 15, so 5 requests cost only their delays
    assert bench.device_time(5, 0.03, 15.0, 15.0) == pytest.approx(0.15)
    # Basic auth: 1 req/s, burst 1: the second request waits for the next token
    assert bench.device_time(2, 0.03, 1.0, 1.0) == pytest.approx(1.03)
    # past the session burst the rate limit dominates
    assert bench.device_time(30, 0.0, 15.0, 15.0) == pytest.approx(1.0)
    total, formula = bench.ideal(1000, 50, 5, 0.03)
    assert total == pytest.approx(20 * 0.15)
    assert "ceil(1000/50)" in formula


@pytest.mark.long  # a minute of subprocesses and fleets: .ci/run runs it (`pytest -m long`)
def test_quick_bench_runs_every_row_with_every_device_succeeding(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--skip-ansible", "--devices", "12",
         "--baseline-devices", "6", "--memory-devices", "30", "--keys", "4",
         "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["schema"] == "certfleet/bench/v1"
    assert doc["params"]["devices"] == 12 and doc["params"]["baseline_devices"] == 6
    rows = doc["rows"]
    assert set(rows) == {"keygen-certfleet", "keygen-openssl", "keygen-library", "push-ca",
                         "status", "floor", "script", "ansible", "rotate", "memory"}
    assert rows["ansible"]["status"] == "skipped: --skip-ansible"
    expected_devices = {"push-ca": 12, "status": 12, "floor": 12, "rotate": 12, "script": 6,
                        "memory": 30}
    for name, devices in expected_devices.items():
        row = rows[name]
        assert row["status"] == "ok", (name, row["status"])
        assert row["devices"] == devices and row["succeeded"] == devices, name
        for key in ("wall_s", "cpu_s", "peak_rss_mb", "requests_per_device", "ideal_s",
                    "wall_ms_per_device", "cpu_ms_per_device", "vs_ideal"):
            assert isinstance(row[key], int | float) and row[key] > 0, (name, key)
        assert "ceil(" in row["ideal_formula"]
    assert rows["push-ca"]["requests_per_device"] >= 3  # session begin, CA Show, CA Add, ...
    assert rows["script"]["requests_per_device"] == 2  # CA Show + CA Add, Basic auth
    for name in ("keygen-certfleet", "keygen-openssl", "keygen-library"):
        assert rows[name]["status"] == "ok", (name, rows[name]["status"])
        assert rows[name]["extra"]["keys"] >= 4 and rows[name]["extra"]["keys_per_s"] > 0
    assert "rotate / keygen alone" in doc["ratios"]
    assert "script / push-ca (x faster)" in doc["ratios"]
    names = {t["target"] for t in doc["targets"]}
    assert "push-ca within 1.3x of the ideal bound" in names
    assert "rotate <= keygen alone x 1.2" in names
    for t in doc["targets"]:
        assert set(t) == {"target", "wanted", "measured", "pass", "note"}
        assert t["pass"] in (True, False, None)
    # the printed table carries the same rows, and says baselines are compared per device
    assert "certfleet push-ca" in done.stdout and "targets (issue 8)" in done.stdout
    assert "compared per device" in done.stdout
