"""`certfleet status` over HTTP sessions vs over the JSON-RPC WebSocket, on one simulated fleet.

    python bench/ws_vs_http.py [--devices 200] [--parallel 20] [--rounds 1] [--json FILE]

Starts roomsim in its own process (``python -m certfleet.roomsim serve``, waits for its ``ready``
line), then runs ``certfleet status`` as a child process against the same devices, once with
the inventory as roomsim wrote it (``transport: local``: putxml/getxml with a session cookie)
and once with ``transport: websocket``, alternating when ``--rounds`` > 1. For each run it
reports the wall time, the CPU time of the certfleet process (user + system, from
``getrusage`` of the waited-for child) and of the simulator over the same span (from
``/proc``, Linux only), and prints the ratios ws/http of the best round. Every device must
answer ``ok`` in every run, or the figures are refused.

Loopback only: the simulator listens on 127.0.0.1 and the script refuses any inventory host
that is not a loopback address. It stops the simulator when done, whatever happens.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import resource
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 600.0
RUN_TIMEOUT = 1800.0


@dataclass
class Figures:
    transport: str
    round: int
    wall_s: float
    cpu_s: float  # certfleet process, user + system
    sim_cpu_s: float | None  # the simulator over the same span
    devices_ok: int


def _sim_cpu(pid: int) -> float | None:
    """user + system seconds of a running process (Linux /proc), or None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def start_sim(devices: int, state: Path, inventory: Path) -> subprocess.Popen[str]:
    sim = subprocess.Popen(
        [sys.executable, "-m", "certfleet.roomsim", "serve", "--devices", str(devices),
         "--state", str(state), "--inventory-out", str(inventory)],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert sim.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(sim.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if not selector.select(timeout=1.0):
            if sim.poll() is not None:
                raise SystemExit(f"roomsim exited with {sim.returncode} before it was ready")
            continue
        line = sim.stdout.readline()
        if line.strip() == "ready":
            return sim
        if not line:
            raise SystemExit(f"roomsim exited with {sim.wait()} before it was ready")
    stop_sim(sim)
    raise SystemExit(f"roomsim was not ready within {READY_TIMEOUT:g}s")


def stop_sim(sim: subprocess.Popen[str]) -> None:
    if sim.poll() is None:
        sim.send_signal(signal.SIGTERM)
        try:
            sim.wait(timeout=60)
        except subprocess.TimeoutExpired:
            sim.kill()
            sim.wait()


def websocket_inventory(inventory: Path, out: Path) -> Path:
    data = yaml.safe_load(inventory.read_text())
    for name, device in data["devices"].items():
        if not ipaddress.ip_address(device["host"]).is_loopback:
            raise SystemExit(f"{name}: {device['host']} is not a loopback address; refusing")
    data["defaults"]["transport"] = "websocket"
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def run_status(transport: str, inventory: Path, parallel: int, journal: Path, sim_pid: int,
               round_: int) -> Figures:
    command = [sys.executable, "-m", "certfleet.cli.main", "status", "-i", str(inventory),
               "--parallel", str(parallel), "-o", "json"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CERTFLEET_JOURNAL": str(journal)}
    cpu_before, sim_before = _children_cpu(), _sim_cpu(sim_pid)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT, check=False)
    wall = time.perf_counter() - started
    cpu = _children_cpu() - cpu_before
    sim_after = _sim_cpu(sim_pid)
    sim_cpu = sim_after - sim_before if sim_before is not None and sim_after is not None else None
    try:
        doc = json.loads(done.stdout)
    except ValueError:
        raise SystemExit(f"{transport}: status exited {done.returncode} without JSON:\n"
                         f"{done.stderr[-2000:]}") from None
    ok = int(doc["summary"].get("ok", 0))
    total = len(doc["devices"])
    if done.returncode != 0 or ok != total:
        failed = [d for d in doc["devices"] if d["outcome"] != "ok"][:3]
        raise SystemExit(f"{transport}: {ok}/{total} devices ok (exit {done.returncode}); "
                         f"first failures: {json.dumps(failed)[:2000]}")
    transports = {d.get("transport") for d in doc["devices"]}
    if transports != {transport}:
        raise SystemExit(f"{transport}: devices reported transports {transports}")
    return Figures(transport, round_, wall, cpu, sim_cpu, ok)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=200, help="simulated devices (200)")
    parser.add_argument("--parallel", type=int, default=20, help="certfleet --parallel (20)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="runs per transport, alternating (1); the best is compared")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.devices < 1 or args.parallel < 1 or args.rounds < 1:
        parser.error("--devices, --parallel and --rounds must be at least 1")

    with tempfile.TemporaryDirectory(prefix="certfleet-bench-") as tmp:
        work = Path(tmp)
        http_inventory = work / "inventory.yaml"
        print(f"starting roomsim with {args.devices} devices ...", file=sys.stderr)
        sim = start_sim(args.devices, work / "state", http_inventory)
        try:
            ws_inventory = websocket_inventory(http_inventory, work / "inventory-ws.yaml")
            results: list[Figures] = []
            for round_ in range(1, args.rounds + 1):
                for transport, inventory in (("local", http_inventory),
                                             ("websocket", ws_inventory)):
                    figures = run_status(transport, inventory, args.parallel,
                                         work / f"journal-{transport}.sqlite", sim.pid, round_)
                    results.append(figures)
                    sim_cpu = figures.sim_cpu_s if figures.sim_cpu_s is not None else float("nan")
                    print(f"round {round_} {transport:9} wall {figures.wall_s:7.2f}s  "
                          f"cpu {figures.cpu_s:6.2f}s  sim cpu {sim_cpu:6.2f}s", file=sys.stderr)
        finally:
            stop_sim(sim)

    def best(transport: str, key: str) -> float:
        return min(float(getattr(f, key)) for f in results if f.transport == transport)

    http_wall, ws_wall = best("local", "wall_s"), best("websocket", "wall_s")
    http_cpu, ws_cpu = best("local", "cpu_s"), best("websocket", "cpu_s")
    summary: dict[str, Any] = {
        "devices": args.devices,
        "parallel": args.parallel,
        "rounds": args.rounds,
        "http": {"wall_s": round(http_wall, 3), "cpu_s": round(http_cpu, 3)},
        "websocket": {"wall_s": round(ws_wall, 3), "cpu_s": round(ws_cpu, 3)},
        "ratio_ws_over_http": {"wall": round(ws_wall / http_wall, 3),
                               "cpu": round(ws_cpu / http_cpu, 3)},
        "runs": [asdict(f) for f in results],
    }
    if all(f.sim_cpu_s is not None for f in results):
        http_sim, ws_sim = best("local", "sim_cpu_s"), best("websocket", "sim_cpu_s")
        summary["http"]["sim_cpu_s"] = round(http_sim, 3)
        summary["websocket"]["sim_cpu_s"] = round(ws_sim, 3)
        summary["ratio_ws_over_http"]["sim_cpu"] = round(ws_sim / http_sim, 3)

    print(f"certfleet status, {args.devices} devices, --parallel {args.parallel}, "
          f"best of {args.rounds}")
    print(f"{'':10} {'wall s':>8} {'cpu s':>8}")
    print(f"{'http':10} {http_wall:8.2f} {http_cpu:8.2f}")
    print(f"{'websocket':10} {ws_wall:8.2f} {ws_cpu:8.2f}")
    print(f"{'ws/http':10} {ws_wall / http_wall:8.2f} {ws_cpu / http_cpu:8.2f}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
