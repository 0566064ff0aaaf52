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
    if str(BENCH.parent) not in sys.path:  # fleet_bench imports benchlib from its folder
        sys.path.insert(0, str(BENCH.parent))
    spec = importlib.util.spec_from_file_location("fleet_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fleet_bench"] = module
    spec.loader.exec_module(module)
    return module


def test_ideal_bound_follows_the_device_limits() -> None:
    load_bench()
    import benchlib as bench

    # a session: 15 req/s with a burst of 15, so 5 requests cost only their delays
    assert bench.device_time(5, 0.03, 15.0, 15.0) == pytest.approx(0.15)
    # Basic auth: 1 req/s, burst 1: the second request waits for the next token
    assert bench.device_time(2, 0.03, 1.0, 1.0) == pytest.approx(1.03)
    # past the session burst the rate limit dominates
    assert bench.device_time(30, 0.0, 15.0, 15.0) == pytest.approx(1.0)
    total, formula = bench.ideal(1000, 50, 5, 0.03)
    assert total == pytest.approx(20 * 0.15)
    assert "ceil(1000/50)" in formula


@pytest.mark.slow
def test_quick_bench_runs_every_row_with_every_device_succeeding(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--skip-ansible", "--devices", "12",
         "--baseline-devices", "6", "--memory-devices", "30", "--keys", "4",
         "--growth", "10,30", "--cloud-devices", "8", "--cloud-shards", "2",
         "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["schema"] == "certfleet/bench/v1"
    assert doc["params"]["devices"] == 12 and doc["params"]["baseline_devices"] == 6
    rows = doc["rows"]
    assert set(rows) == {"keygen-certfleet", "keygen-openssl", "keygen-library", "push-ca",
                         "status", "floor", "script", "ansible", "rotate", "memory",
                         "growth-10", "growth-30", "cloud-push-ca", "cloud-status",
                         "cloud-shard", "cloud-shared"}
    assert rows["ansible"]["status"] == "skipped: --skip-ansible"
    expected_devices = {"push-ca": 12, "status": 12, "floor": 12, "rotate": 12, "script": 6,
                        "memory": 30, "growth-10": 10, "growth-30": 30}
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
    # the memory figure is the growth row of the same size, not a second run
    assert rows["memory"]["extra"]["same_run_as"] == "growth-30"
    assert "growth CPU per device 30/10" in doc["ratios"]
    assert "growth: CPU per device, 30 / 10 <= 1.10" in names
    # cloud rows: roomsim's own count of what certfleet sent matches the calls it reported
    for name, outcome_devices in (("cloud-push-ca", 8), ("cloud-status", 8)):
        row = rows[name]
        assert row["status"] == "ok", (name, row["status"])
        assert row["devices"] == row["succeeded"] == outcome_devices
        extra = row["extra"]
        assert extra["requests_roomsim"] == extra["requests_certfleet_json"] > 0, name
        assert extra["self_caused_429"] == 0
        assert row["ideal_s"] == pytest.approx(
            extra["requests_roomsim"] / (extra["client_rate_per_min"] / 60), rel=1e-3)
    shard = rows["cloud-shard"]
    assert shard["status"] == "ok" and shard["succeeded"] == 8
    assert len(shard["extra"]["shards"]) == 2
    assert sum(p["devices"] for p in shard["extra"]["shards"]) == 8
    shared = rows["cloud-shared"]
    assert shared["status"] == "ok" and shared["extra"]["hammer_requests"] > 0
    assert shared["extra"]["outcomes"] == {"changed": 8}
    assert "cloud push-ca wall <= 1.05x its rate bound" in names
    assert "cloud push-ca causes 0 429s" in names
    # the printed table carries the same rows, and says baselines are compared per device
    assert "certfleet push-ca" in done.stdout and "targets (issues 8 and 18)" in done.stdout
    assert "compared per device" in done.stdout


def test_cloud_traffic_is_counted_per_token_and_agent() -> None:
    load_bench()
    import cloud_rows

    before = [{"token": 1, "agent": "certfleet/0.1", "status": 200, "count": 5}]
    after = [{"token": 1, "agent": "certfleet/0.1", "status": 200, "count": 12},
             {"token": 1, "agent": "certfleet/0.1", "status": 429, "count": 2},
             {"token": 1, "agent": "bench-hammer/1", "status": 200, "count": 40},
             {"token": 2, "agent": "certfleet/0.1", "status": 200, "count": 9},
             {"token": 1, "agent": "certfleet/0.1", "status": 404, "count": 1}]
    assert cloud_rows.traffic_delta(before, after, token=1, agent="certfleet/") == {
        "requests": 10, "rate_limited": 2, "other_errors": 1}
    assert cloud_rows.traffic_delta(before, after, token=1, agent="bench-hammer/") == {
        "requests": 40, "rate_limited": 0, "other_errors": 0}
    assert cloud_rows.traffic_delta([], after, agent="certfleet/")["requests"] == 24
