"""Fleet benchmark: certfleet against what users would use instead, and against the bound the
devices (and the Webex cloud's rate limit) impose (issues 8 and 18).

    python bench/fleet_bench.py [--devices 1000] [--baseline-devices 200] [--delay-ms 30]
                                [--parallel 50] [--keys N] [--memory-devices 10000]
                                [--growth 1000,5000,10000] [--cloud-devices 900]
                                [--cloud-rate 3000] [--cloud-shards 2] [--cloud-hammer-rate R]
                                [--only push-ca,status,...] [--skip-ansible] [--quick]
                                [--profile DIR] [--json FILE]

What one run does (every client is a child process; its CPU time and peak RSS come from
``os.wait4``, i.e. the kernel's exact user + system time and ``ru_maxrss`` of that process and
of the children it waited for):

keygen      certfleet's ``KeyFactory`` (bench/keygen_certfleet.py) making N RSA-2048 keys, against
            ``openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`` looping in one
            process per core, all cores at once. Keys per wall second.
            roomsim starts (``python -m certfleet.roomsim serve``, its own process) with N devices,
            the real per-device limits (Basic auth 1 req/s, queue 30; session 15 req/s, queue
            90; session caps; lockout) and ``--request-delay`` = ``--delay-ms`` on every reply.
push-ca     ``certfleet push-ca`` of a fresh CA (made here) that no device has; every device
            must come back ``changed`` and the CA must be in every device's stored state.
status      ``certfleet status``; every device must be ``ok``.
script      bench/baselines/script_push_ca.py (httpx, Basic auth on every request, 20 threads)
            pushing another fresh CA to the first --baseline-devices devices; checked the same way.
ansible     bench/baselines/push_ca.yml (ansible-core ``uri``, forks 50, TLS verified against
            the devices' CA) doing the same with a third CA. ansible-core lives in
            bench/.venv-ansible, made on demand (not a certfleet dependency); when it cannot be
            installed the row says ``unavailable: <reason>``.
rotate      ``certfleet rotate --purpose HTTPS --signer local-ca --force`` with RSA-2048 keys
            (a lab CA from ``certfleet ca init``); every device must be ``changed``.
memory      roomsim again with --memory-devices (10,000) and ``certfleet status`` on all of them:
            the client's peak RSS (taken from the growth row of that size when both run).
growth      ``certfleet status`` on --growth sizes (1,000, 5,000, 10,000), a roomsim each: wall,
            CPU and peak RSS per device, largest against smallest (bench/growth_rows.py).
cloud       roomsim's simulated Webex cloud (--cloud-devices, --cloud-rate requests a minute per
            token): push-ca and status against the rate bound with the 429s certfleet caused,
            --cloud-shards shards with a token each, and a token shared with another process
            (bench/cloud_rows.py).

The ideal bound of a row is what the device delays and limits alone impose at the row's
parallelism P: a device answers each of its k sequential requests after the delay d and after
its rate limiter (token bucket: session 15/s with a burst of 15; Basic 1/s with a burst of 1)
lets it through, so one device takes t_dev(k) (simulated exactly from roomsim's limiter rules,
= k·d while k ≤ 15 on a session), and N devices P at a time take ceil(N/P) · t_dev(k). k is the
mean number of xAPI requests per device that the client reported (certfleet: the ``calls`` of
its JSON, session begin and end included; TCP/TLS handshakes are not counted, nor is the TLS
probe ``rotate`` makes after activating a certificate). So the bound assumes a client with zero
CPU time, a network with zero latency, and devices that finish exactly on time.

Baselines run on fewer devices; they are compared with certfleet per device (wall time / N).
Targets (issues 8 and 18) are printed beside the figures with pass/miss. ``--quick`` is a
reduced run (N=100, baselines 50, memory 1000, 16 keys, growth 100/300/1000, 40 cloud devices,
ansible only if already installed) in a few minutes.

Loopback only: roomsim listens on 127.0.0.1 and every inventory host is checked to be a
loopback address. State lives in a temporary folder; roomsim is stopped on exit, on Ctrl-C and
on SIGTERM (and, on Linux, when this process dies).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import platform
import pstats
import re
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import yaml
from benchlib import (
    BENCH,
    ROOT,
    BenchError,
    Measured,
    Row,
    Sim,
    _round,
    ideal,
    make_ca,
    openssl_versions,
    run_from_bytecode,
    run_measured,
)
from cloud_rows import CloudRows, cloud_lines, cloud_targets, rate_of
from growth_rows import growth_figures, growth_row

ANSIBLE_VENV = BENCH / ".venv-ansible"
ANSIBLE_REQUIREMENT = "ansible-core>=2.16,<2.20"
SCHEMA = "certfleet/bench/v1"
ROWS = ("keygen", "push-ca", "status", "floor", "script", "ansible", "rotate", "memory",
        "growth", "cloud")
SCRIPT_WORKERS = 20


def _uvloop_version() -> str | None:
    """uvloop's version when certfleet's runs here take its loop (fleet/_loop.py), else None."""
    if os.environ.get("CERTFLEET_EVENT_LOOP", "").strip().lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return str(uvloop.__version__)


#: the loop certfleet runs on in this benchmark: uvloop's (this version) or asyncio's (None)
UVLOOP = _uvloop_version()
ANSIBLE_FORKS = 50


# ----------------------------------------------------------------------------- rows


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.delay = args.delay_ms / 1000
        self.rows: dict[str, Row] = {}
        self.profiles: dict[str, dict[str, list[str]]] = {}
        self.sim: Sim | None = None
        self.cas = work / "cas"
        self.cas.mkdir()
        self.secrets = {"CERTFLEET_CA_PASSPHRASE": secrets.token_urlsafe(18),
                        "CERTFLEET_JOURNAL_PASSPHRASE": secrets.token_urlsafe(18)}
        self.lab: Path | None = None
        self.load_start = os.getloadavg()
        self.bytecode_note = "as the environment has it"

    def log(self, text: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    def wanted(self, name: str) -> bool:
        return name in self.args.only

    def record(self, row: Row, action: Callable[[Row], None]) -> Row:
        self.rows[row.name] = row
        self.log(f"{row.label} ...")
        try:
            action(row)
        except BenchError as exc:
            row.status = f"failed: {exc}"
        if row.ok:
            self.log(f"{row.label}: {row.wall_s:.2f} s wall, cpu {row.cpu_s or 0:.2f} s, "
                     f"peak RSS {row.peak_rss_mb or 0:.0f} MB")
        else:
            self.log(f"{row.label}: {row.status}")
        return row

    # ------------------------------------------------------------------ certfleet

    def certfleet(self, tag: str, verb_args: list[str], *, sample_tree: bool = False,
                  profile: bool = False) -> tuple[Measured, dict[str, Any], list[str]]:
        journal = self.work / f"journal-{tag}.sqlite"
        prefix = [sys.executable]
        if profile:
            assert self.args.profile is not None
            prefix += ["-m", "cProfile", "-o", str(self.args.profile / f"{tag}.prof")]
        command = [*prefix, "-m", "certfleet.cli.main", *verb_args, "-o", "json"]
        env = {"CERTFLEET_JOURNAL": str(journal), **self.secrets}
        measured = run_measured(command, self.work, tag, env=env,
                                sim_pid=self.sim.pid if self.sim else None,
                                sample_tree=sample_tree)
        doc = measured.json("certfleet")
        shown = ["certfleet", *verb_args, "-o", "json"]
        return measured, doc, shown

    @staticmethod
    def check_outcomes(doc: dict[str, Any], measured: Measured, devices: int,
                       outcome: str) -> int:
        entries = doc.get("devices", [])
        good = sum(1 for d in entries if d.get("outcome") == outcome)
        if measured.exit_code != 0 or len(entries) != devices or good != devices:
            bad = [{k: d.get(k) for k in ("device", "outcome", "error")}
                   for d in entries if d.get("outcome") != outcome][:3]
            raise BenchError(f"{good}/{devices} devices {outcome} (of {len(entries)} reported, "
                             f"exit {measured.exit_code}); first others: {json.dumps(bad)[:1200]}")
        return good

    @staticmethod
    def requests_per_device(doc: dict[str, Any]) -> float:
        entries = doc["devices"]
        return sum(len(d.get("calls", [])) for d in entries) / max(1, len(entries))

    def fill(self, row: Row, measured: Measured, devices: int, parallel: int) -> None:
        row.devices, row.parallel = devices, parallel
        row.wall_s, row.cpu_s, row.peak_rss_mb = measured.wall_s, measured.cpu_s, \
            measured.peak_rss_mb
        row.tree_cpu_s, row.sim_cpu_s = measured.tree_cpu_s, measured.sim_cpu_s
        row.exit_code = measured.exit_code
        if measured.peak_tree_rss_mb is not None:
            row.extra["peak_tree_rss_mb"] = round(measured.peak_tree_rss_mb, 1)

    def verify_cas(self, names: list[str], fingerprint: str) -> None:
        assert self.sim is not None
        missing = [n for n in names if fingerprint not in self.sim.device_cas(n)]
        if missing:
            raise BenchError(f"the CA is missing on {len(missing)} devices by roomsim's own "
                             f"state, e.g. {missing[:3]}")

    def inventory(self) -> Path:
        """The roomsim inventory trusting the sim CA and the lab CA (so devices stay trusted
        after `rotate` changes their HTTPS certificates), with an RSA-2048 template."""
        assert self.sim is not None
        path = self.work / "inventory.yaml"
        if path.exists():
            return path
        trust = self.work / "device-trust.pem"
        lab = (self.lab / "ca.pem").read_text() if self.lab else ""
        trust.write_text(self.sim.ca_path.read_text() + lab)
        data = yaml.safe_load(self.sim.inventory.read_text())
        data["defaults"]["verify"] = f"ca:{trust}"
        data["defaults"]["certificate"] = {
            "key": "rsa-2048", "subject": {"O": "certfleet bench"},
            "san_dns": ["{name}.rooms.example"], "san_ip": ["{host}"],
        }
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def device_names(self, count: int | None = None) -> list[str]:
        assert self.sim is not None
        names = list(yaml.safe_load(self.sim.inventory.read_text())["devices"])
        return names if count is None else names[:count]

    def best_of_rounds(self, row: Row, tag: str, outcome: str,
                       make_args: Callable[[int], tuple[list[str], str | None]]) -> None:
        """Run a certfleet verb --rounds times (each must succeed on every device) and keep
        the round with the least wall time; every round's figures stay in `extra`."""
        n, p = self.args.devices, self.args.parallel
        best: tuple[Measured, dict[str, Any], list[str]] | None = None
        walls, cpus, floors, uv_floors = [], [], [], []
        for round_ in range(1, self.args.rounds + 1):
            verb_args, fingerprint = make_args(round_)
            suffix = f"-{round_}" if self.args.rounds > 1 else ""
            measured, doc, shown = self.certfleet(tag + suffix, verb_args)
            self.check_outcomes(doc, measured, n, outcome)
            if fingerprint is not None:
                self.verify_cas(self.device_names(), fingerprint)
            walls.append(round(measured.wall_s, 3))
            cpus.append(round(measured.cpu_s, 3))
            if self.wanted("floor"):
                # the floor client right after each round: on a machine whose speed drifts
                # (a shared VM), only back-to-back runs make a CPU ratio worth reading
                floors.append(round(self.floor_run(f"floor-after-{tag}{suffix}").cpu_s, 3))
                if UVLOOP:
                    uv_floors.append(round(self.floor_run(f"floor-uvloop-after-{tag}{suffix}",
                                                          "uvloop").cpu_s, 3))
            if best is None or measured.wall_s < best[0].wall_s:
                best = (measured, doc, shown)
        assert best is not None
        measured, doc, shown = best
        self.fill(row, measured, n, p)
        row.command = " ".join(shown)
        row.succeeded = n
        row.requests_per_device = self.requests_per_device(doc)
        row.ideal_s, row.ideal_formula = ideal(n, p, row.requests_per_device, self.delay)
        if self.args.rounds > 1:
            row.extra.update(rounds_wall_s=walls, rounds_cpu_s=cpus, kept="least wall time")
        if floors:
            row.extra["paired_floor_cpu_s"] = floors
            if uv_floors:
                row.extra["paired_floor_uvloop_cpu_s"] = uv_floors
            row.extra["rounds_cpu_s"] = cpus
        row.status = "ok"
        if self.args.profile:
            verb_args, _ = make_args(0)
            profiled, doc, _ = self.certfleet(f"{tag}-profile", verb_args, profile=True)
            self.check_outcomes(doc, profiled, n, outcome)
            self.profile_report(tag, profiled)

    def push_ca(self, row: Row) -> None:
        def make_args(round_: int) -> tuple[list[str], str | None]:
            label = f"round {round_}" if round_ else "profiled"
            ca, fingerprint = make_ca(f"Bench push-ca Root {label}", self.cas)
            return ["push-ca", str(ca), "-i", str(self.inventory()),
                    "--parallel", str(self.args.parallel)], fingerprint

        self.best_of_rounds(row, "push-ca", "changed", make_args)

    def status(self, row: Row) -> None:
        def make_args(round_: int) -> tuple[list[str], str | None]:
            return ["status", "-i", str(self.inventory()),
                    "--parallel", str(self.args.parallel)], None

        self.best_of_rounds(row, "status", "ok", make_args)

    def lab_ca(self) -> Path:
        """`certfleet ca init`: the local CA that signs the rotated certificates."""
        if self.lab is None:
            lab = self.work / "lab-ca"
            done = subprocess.run(
                [sys.executable, "-m", "certfleet.cli.main", "ca", "init", "--dir", str(lab),
                 "--cn", "Bench Lab CA", "--passphrase", "env:CERTFLEET_CA_PASSPHRASE"],
                cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **self.secrets},
                capture_output=True, text=True, check=False, timeout=300)
            if done.returncode != 0:
                raise BenchError(f"certfleet ca init failed: {done.stderr[-1000:]}")
            self.lab = lab
        return self.lab

    def rotate(self, row: Row) -> None:
        n, p = self.args.devices, self.args.parallel
        lab = self.lab_ca()
        # key generation alone, measured again right before and right after the rotation:
        # on a machine whose speed drifts (a shared VM) the keygen row, minutes earlier, is
        # not what the rotation's keys cost; the mean of the two brackets it
        before, _ = self.keygen_run("keygen-before-rotate")
        measured, doc, shown = self.certfleet(
            "rotate", ["rotate", "-i", str(self.inventory()), "--purpose", "HTTPS",
                       "--signer", "local-ca", "--ca-dir", str(lab), "--force",
                       "--parallel", str(p)], sample_tree=True)
        after, _ = self.keygen_run("keygen-after-rotate")
        bracket = [json.loads(m.stdout.strip().splitlines()[-1])["keys_per_s"]
                   for m in (before, after)]
        row.extra["keygen_keys_per_s_before_after"] = bracket
        per_key = [(m.tree_cpu_s or m.cpu_s) / (self.args.keys + (os.cpu_count() or 1))
                   for m in (before, after)]
        row.extra["keygen_cpu_s_per_key_before_after"] = [round(x, 5) for x in per_key]
        self.fill(row, measured, n, p)
        row.command = " ".join(shown)
        row.succeeded = self.check_outcomes(doc, measured, n, "changed")
        row.extra["key"] = "rsa-2048"
        row.requests_per_device = self.requests_per_device(doc)
        network, formula = ideal(n, p, row.requests_per_device, self.delay)
        row.extra["network_ideal_s"] = round(network, 3)
        keys_per_s = statistics.mean(bracket)
        alone = n / keys_per_s
        row.extra["keygen_alone_s"] = round(alone, 3)
        row.ideal_s = max(network, alone)
        row.ideal_formula = (f"max(network {formula}; keygen alone N / certfleet keys/s, the "
                             f"mean of runs right before and after = {n} / {keys_per_s:.2f} = "
                             f"{alone:.2f} s)")
        row.status = "ok"

    # ------------------------------------------------------------------ baselines

    def baseline_devices(self) -> list[dict[str, str]]:
        assert self.sim is not None
        data = yaml.safe_load(self.sim.inventory.read_text())["devices"]
        names = list(data)[: self.args.baseline_devices]
        return [{"name": n, "host": str(data[n]["host"]), "port": str(data[n]["port"])}
                for n in names]

    def device_trust(self) -> Path:
        self.inventory()
        return self.work / "device-trust.pem"

    def script(self, row: Row) -> None:
        devices = self.baseline_devices()
        csv_path = self.work / "devices.csv"
        with csv_path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["name", "host", "port"])
            writer.writeheader()
            writer.writerows(devices)
        ca, fingerprint = make_ca("Bench script Root", self.cas)
        assert self.sim is not None
        command = [sys.executable, str(BENCH / "baselines" / "script_push_ca.py"),
                   "--devices", str(csv_path), "--pem", str(ca), "--username", "admin",
                   "--password-file", str(self.sim.password_path),
                   "--device-ca", str(self.device_trust()), "--workers", str(SCRIPT_WORKERS)]
        measured = run_measured(command, self.work, "script", sim_pid=self.sim.pid)
        n = len(devices)
        self.fill(row, measured, n, SCRIPT_WORKERS)
        row.command = "python bench/baselines/script_push_ca.py --workers 20 ..."
        doc = measured.json("script")
        if measured.exit_code != 0 or doc.get("changed") != n:
            raise BenchError(f"{doc.get('changed')}/{n} devices changed "
                             f"(exit {measured.exit_code}): {json.dumps(doc.get('errors'))[:800]}")
        self.verify_cas([d["name"] for d in devices], fingerprint)
        row.succeeded = n
        row.requests_per_device = doc["requests"] / n
        row.ideal_s, row.ideal_formula = ideal(n, SCRIPT_WORKERS, row.requests_per_device,
                                               self.delay, basic=True)
        row.status = "ok"

    def floor_run(self, tag: str, loop: str = "asyncio") -> Measured:
        """One run of the floor client on every device (each must answer), on ``loop``."""
        assert self.sim is not None
        n = self.args.devices
        command = [sys.executable, str(BENCH / "baselines" / "floor_client.py"),
                   "--inventory", str(self.sim.inventory), "--device-ca", str(self.sim.ca_path),
                   "--password-file", str(self.sim.password_path),
                   "--parallel", str(self.args.parallel), "--loop", loop]
        measured = run_measured(command, self.work, tag, sim_pid=self.sim.pid)
        doc = measured.json("floor client")
        if measured.exit_code != 0 or doc.get("ok") != n:
            raise BenchError(f"floor client: {doc.get('ok')}/{n} devices answered: "
                             f"{doc.get('errors')}")
        return measured

    def floor(self, row: Row) -> None:
        """The exchange `status` has with each device, done by the least Python can do
        (bench/baselines/floor_client.py): the client CPU per device no Python client beats."""
        n = self.args.devices
        measured = self.floor_run("floor")
        doc = measured.json("floor client")
        if UVLOOP:
            # the same floor on uvloop's loop, which certfleet runs on where it is installed:
            # says how much of the distance to the yardstick the loop alone makes up
            row.extra["uvloop_cpu_s"] = round(self.floor_run("floor-uvloop", "uvloop").cpu_s, 3)
        # h11's request/reply cycle alone, six per device, right after (the machine's speed
        # drifts): the part of certfleet's distance to the floor its framing library takes
        cycle = subprocess.run([sys.executable, str(BENCH / "h11_cycle.py")], check=True,
                               capture_output=True, text=True)
        row.extra["h11_cycle_ms_per_device"] = json.loads(cycle.stdout)["h11_ms_per_device"]
        self.fill(row, measured, n, self.args.parallel)
        row.command = "python bench/baselines/floor_client.py --parallel P ..."
        row.succeeded = n
        row.requests_per_device = doc["requests"] / n
        row.ideal_s, row.ideal_formula = ideal(n, self.args.parallel, row.requests_per_device,
                                               self.delay)
        row.status = "ok"

    def ansible_playbook(self) -> Path:
        """bench/.venv-ansible/bin/ansible-playbook, installing ansible-core on demand."""
        playbook = ANSIBLE_VENV / "bin" / "ansible-playbook"
        if playbook.exists():
            return playbook
        if self.args.quick:
            raise BenchError("skipped: --quick runs ansible only when bench/.venv-ansible "
                             "already exists (run once without --quick to install it)")
        self.log(f"installing {ANSIBLE_REQUIREMENT} into {ANSIBLE_VENV} ...")
        steps = [[sys.executable, "-m", "venv", str(ANSIBLE_VENV)],
                 [str(ANSIBLE_VENV / "bin" / "python"), "-m", "pip", "install", "-q",
                  ANSIBLE_REQUIREMENT]]
        for step in steps:
            try:
                done = subprocess.run(step, capture_output=True, text=True, check=False,
                                      timeout=900)
            except (OSError, subprocess.TimeoutExpired) as exc:
                shutil.rmtree(ANSIBLE_VENV, ignore_errors=True)
                raise BenchError(f"unavailable: {exc}") from None
            if done.returncode != 0:
                shutil.rmtree(ANSIBLE_VENV, ignore_errors=True)
                reason = (done.stderr.strip().splitlines() or ["exit " + str(done.returncode)])
                raise BenchError(f"unavailable: {' '.join(step[:3])}: {reason[-1][:300]}")
        if not playbook.exists():
            raise BenchError("unavailable: ansible-core installed no ansible-playbook")
        return playbook

    def ansible(self, row: Row) -> None:
        try:
            playbook_bin = self.ansible_playbook()
        except BenchError as exc:
            text = str(exc)
            row.status = text if text.startswith(("unavailable", "skipped")) else \
                f"unavailable: {text}"
            return
        assert self.sim is not None
        devices = self.baseline_devices()
        ca, fingerprint = make_ca("Bench ansible Root", self.cas)
        folder = self.work / "ansible"
        folder.mkdir(exist_ok=True)
        inventory = {"all": {"children": {"rooms": {"hosts": {
            d["name"]: {"xapi_host": d["host"], "xapi_port": int(d["port"])} for d in devices
        }}}, "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"}}}
        (folder / "inventory.yml").write_text(yaml.safe_dump(inventory, sort_keys=False))
        variables = folder / "vars.yml"
        variables.write_text(yaml.safe_dump({
            "xapi_user": "admin", "xapi_password": self.sim.password_path.read_text().strip(),
            "device_ca": str(self.device_trust()), "ca_pem_file": str(ca),
            "ca_fingerprint": fingerprint,
        }))
        variables.chmod(0o600)
        (folder / "ansible.cfg").write_text(
            f"[defaults]\nforks = {ANSIBLE_FORKS}\nhost_key_checking = False\n"
            "retry_files_enabled = False\ninterpreter_python = auto_silent\n"
            f"local_tmp = {folder / 'tmp'}\nremote_tmp = {folder / 'remote-tmp'}\n")
        command = [str(playbook_bin), "-i", str(folder / "inventory.yml"), "-e", f"@{variables}",
                   str(BENCH / "baselines" / "push_ca.yml")]
        env = {"ANSIBLE_CONFIG": str(folder / "ansible.cfg"), "ANSIBLE_HOME": str(folder),
               "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}
        measured = run_measured(command, self.work, "ansible", env=env, sim_pid=self.sim.pid)
        n = len(devices)
        self.fill(row, measured, n, ANSIBLE_FORKS)
        row.command = ("ansible-playbook -i inventory.yml -e @vars.yml "
                       "bench/baselines/push_ca.yml (forks 50)")
        recap = {m.group(1): {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
                 for m in re.finditer(r"^(\S+)\s+:\s+(ok=.*)$", measured.stdout, re.M)}
        good = [h for h, c in recap.items()
                if c.get("failed") == 0 and c.get("unreachable") == 0 and c.get("changed") == 1]
        if measured.exit_code != 0 or len(good) != n:
            raise BenchError(f"{len(good)}/{n} hosts changed (exit {measured.exit_code}): "
                             f"{measured.stdout[-1500:]}{measured.stderr[-500:]}")
        self.verify_cas([d["name"] for d in devices], fingerprint)
        row.succeeded = n
        row.requests_per_device = 2.0  # CA Show + CA Add, each host changed
        row.extra["validate_certs"] = "true, ca_path = the devices' CA"
        row.extra["ansible_core"] = self.ansible_version(playbook_bin)
        row.ideal_s, row.ideal_formula = ideal(n, ANSIBLE_FORKS, 2.0, self.delay, basic=True)
        row.status = "ok"

    @staticmethod
    def ansible_version(playbook_bin: Path) -> str:
        done = subprocess.run([str(playbook_bin), "--version"], capture_output=True, text=True,
                              check=False, timeout=120)
        match = re.search(r"core ([\d.]+)", done.stdout)
        return match.group(1) if match else "unknown"

    # ------------------------------------------------------------------ keys

    def keygen_run(self, tag: str) -> tuple[Measured, dict[str, Any]]:
        """certfleet's KeyFactory making --keys keys (bench/keygen_certfleet.py)."""
        measured = run_measured(
            [sys.executable, str(BENCH / "keygen_certfleet.py"), "--keys", str(self.args.keys)],
            self.work, tag, sample_tree=True)
        if measured.exit_code != 0:
            raise BenchError(f"exit {measured.exit_code}: {measured.stderr[-1000:]}")
        doc: dict[str, Any] = json.loads(measured.stdout.strip().splitlines()[-1])
        return measured, doc

    def keygen_certfleet(self, row: Row) -> None:
        keys = self.args.keys
        measured, doc = self.keygen_run("keygen-certfleet")
        row.wall_s, row.cpu_s = doc["wall_s"], measured.cpu_s
        row.tree_cpu_s, row.peak_rss_mb = measured.tree_cpu_s, measured.peak_rss_mb
        row.parallel = doc["workers"]
        row.extra.update(keys=keys, kind="rsa-2048", keys_per_s=doc["keys_per_s"],
                         openssl=openssl_versions()["cryptography"],
                         warmup_s=doc["warmup_s"], process_wall_s=round(measured.wall_s, 3))
        row.status = "ok"

    def keygen_openssl(self, row: Row) -> None:
        openssl = shutil.which("openssl")
        if openssl is None:
            row.status = "unavailable: no openssl on PATH"
            return
        cores = os.cpu_count() or 1
        per = max(1, math.ceil(self.args.keys / cores))
        loop = (f'i=0; while [ "$i" -lt {per} ]; do "{openssl}" genpkey -algorithm RSA '
                f"-pkeyopt rsa_keygen_bits:2048 -out /dev/null 2>/dev/null || exit 1; "
                f"i=$((i+1)); done")
        started = time.perf_counter()
        procs = [subprocess.Popen(["sh", "-c", loop], stdin=subprocess.DEVNULL,
                                  start_new_session=True) for _ in range(cores)]
        codes = wait_all(procs)
        wall = time.perf_counter() - started
        if any(codes):
            raise BenchError(f"openssl genpkey loops exited {codes}")
        total = per * cores
        row.wall_s, row.parallel = wall, cores
        row.extra.update(keys=total, kind="rsa-2048", keys_per_s=round(total / wall, 3),
                         command="openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048",
                         openssl=openssl_versions()["cli"])
        row.status = "ok"

    def keygen_library(self, row: Row) -> None:
        """The same OpenSSL that certfleet uses (the one inside `cryptography`), one plain
        generate_private_key loop per core: the ceiling for KeyFactory on this machine."""
        cores = os.cpu_count() or 1
        per = max(1, math.ceil(self.args.keys / cores))
        loop = ("from cryptography.hazmat.primitives.asymmetric import rsa\n"
                f"for _ in range({per}):\n    rsa.generate_private_key(65537, 2048)\n")
        started = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-c", loop], stdin=subprocess.DEVNULL,
                                  start_new_session=True) for _ in range(cores)]
        codes = wait_all(procs)
        wall = time.perf_counter() - started
        if any(codes):
            raise BenchError(f"generate_private_key loops exited {codes}")
        total = per * cores
        row.wall_s, row.parallel = wall, cores
        row.extra.update(keys=total, kind="rsa-2048", keys_per_s=round(total / wall, 3),
                         openssl=openssl_versions()["cryptography"])
        row.status = "ok"

    # ------------------------------------------------------------------ memory

    def memory(self, row: Row) -> None:
        m = self.args.memory_devices
        same = self.rows.get(f"growth-{m}")
        if same is not None and same.ok:  # the same measurement: not run twice
            for key in ("devices", "succeeded", "parallel", "wall_s", "cpu_s", "tree_cpu_s",
                        "peak_rss_mb", "sim_cpu_s", "requests_per_device", "ideal_s",
                        "ideal_formula", "exit_code", "command"):
                setattr(row, key, getattr(same, key))
            row.extra.update(same.extra, same_run_as=same.name)
            row.status = "ok"
            return
        self.status_on_new_fleet(row, m, "memory")

    def status_on_new_fleet(self, row: Row, size: int, tag: str, *,
                            sample_tree: bool = False) -> None:
        """`certfleet status` on a roomsim fleet of ``size`` devices started for it (the memory
        and growth rows), checked like every row."""
        p = self.args.parallel
        self.log(f"starting roomsim with {size} devices for the {tag} run ...")
        with Sim(size, self.work / f"sim-{tag}", self.delay) as sim:
            row.extra["sim_start_s"] = round(sim.start_s or 0, 2)
            measured = run_measured(
                [sys.executable, "-m", "certfleet.cli.main", "status", "-i", str(sim.inventory),
                 "--parallel", str(p), "-o", "json"],
                self.work, f"{tag}-status", sim_pid=sim.pid, sample_tree=sample_tree,
                env={"CERTFLEET_JOURNAL": str(self.work / f"journal-{tag}.sqlite")})
            doc = measured.json("certfleet")
            self.fill(row, measured, size, p)
            row.command = f"certfleet status -i <{size}-device inventory> --parallel {p} -o json"
            row.succeeded = self.check_outcomes(doc, measured, size, "ok")
            row.requests_per_device = self.requests_per_device(doc)
            row.ideal_s, row.ideal_formula = ideal(size, p, row.requests_per_device, self.delay)
        row.status = "ok"

    # ------------------------------------------------------------------ profiles

    def profile_report(self, name: str, measured: Measured) -> None:
        """Top 25 functions of a cProfile run: by cumulative time, by own time, and by
        cumulative time among certfleet's own functions (fleet/, cli/)."""
        assert self.args.profile is not None
        prof = self.args.profile / f"{name}-profile.prof"
        stats = pstats.Stats(str(prof), stream=io.StringIO())
        table: dict[Any, tuple[int, float, float]] = {
            func: (nc, tt, ct)
            for func, (_, nc, tt, ct, _) in stats.stats.items()  # type: ignore[attr-defined]
        }
        ours = tuple(str(ROOT / part) + os.sep for part in ("fleet", "cli"))

        def line(func: Any) -> str:
            nc, tt, ct = table[func]
            path = func[0]
            short = os.path.relpath(path, ROOT) if path.startswith(str(ROOT)) else \
                os.path.basename(path)
            return f"{nc:>9} {tt:9.3f} {ct:9.3f}  {short}:{func[1]}({func[2]})"

        top = {
            "cumulative": [line(f) for f in sorted(table, key=lambda f: -table[f][2])[:25]],
            "tottime": [line(f) for f in sorted(table, key=lambda f: -table[f][1])[:25]],
            "cumulative, certfleet code": [
                line(f) for f in sorted((f for f in table if f[0].startswith(ours)),
                                        key=lambda f: -table[f][2])[:25]],
        }
        self.profiles[name] = top
        text = [f"{name}: profiled run {measured.wall_s:.2f} s wall, {measured.cpu_s:.2f} s cpu "
                f"(cProfile overhead included); {prof}"]
        for order, lines in top.items():
            text += [f"-- top 25 by {order}", f"{'ncalls':>9} {'tottime':>9} {'cumtime':>9}",
                     *lines]
        (self.args.profile / f"{name}-top.txt").write_text("\n".join(text) + "\n")

    # ------------------------------------------------------------------ the run

    def run(self) -> None:
        a = self.args
        if self.wanted("keygen"):
            self.record(Row("keygen-certfleet", f"certfleet KeyFactory, {a.keys} RSA-2048 keys"),
                        self.keygen_certfleet)
            self.record(Row("keygen-openssl", f"openssl genpkey on {os.cpu_count()} cores"),
                        self.keygen_openssl)
            self.record(Row("keygen-library", f"same OpenSSL, {os.cpu_count()} processes"),
                        self.keygen_library)
        fleet_rows = [r for r in ("push-ca", "status", "floor", "script", "ansible", "rotate")
                      if self.wanted(r)]
        if fleet_rows:
            self.log(f"starting roomsim with {a.devices} devices, delay {a.delay_ms:g} ms ...")
            sim = Sim(a.devices, self.work / "sim", self.delay)
            self.sim = sim
            try:
                sim.start()
                self.log(f"roomsim ready in {sim.start_s:.1f} s (pid {sim.pid})")
                if self.wanted("rotate"):
                    self.lab_ca()
                steps: list[tuple[Row, Callable[[Row], None]]] = [
                    (Row("push-ca", "certfleet push-ca"), self.push_ca),
                    (Row("status", "certfleet status"), self.status),
                    (Row("floor", "floor: status's exchange, bare"), self.floor),
                    (Row("script", "baseline script push-ca"), self.script),
                    (Row("ansible", "baseline ansible push-ca"), self.ansible),
                    (Row("rotate", "certfleet rotate HTTPS, RSA-2048"), self.rotate),
                ]
                for row, action in steps:
                    if not self.wanted(row.name):
                        continue
                    if row.name == "ansible" and a.skip_ansible:
                        row.status = "skipped: --skip-ansible"
                        self.rows[row.name] = row
                        continue
                    self.record(row, action)
            finally:
                sim.stop()
                self.sim = None
        # the cloud rows before the big fleets: a child's ru_maxrss starts at this process's
        # RSS when it forks, and this process grows with every large JSON document it reads
        if self.wanted("cloud"):
            CloudRows(self).run()
        if self.wanted("growth"):
            for size in a.growth:
                growth_row(self, size)
        if self.wanted("memory"):
            self.record(Row("memory", f"certfleet status, {a.memory_devices} devices (memory)"),
                        self.memory)

    # ------------------------------------------------------------------ results

    def comparisons(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        rows = self.rows

        def good(name: str) -> Row | None:
            row = rows.get(name)
            return row if row is not None and row.ok else None

        ratios: dict[str, Any] = {}
        push, status, rotate = good("push-ca"), good("status"), good("rotate")
        targets: list[dict[str, Any]] = []

        def target(name: str, wanted: str, measured: float | None, passed: bool | None,
                   note: str = "") -> None:
            targets.append({"target": name, "wanted": wanted,
                            "measured": _round(measured, 3), "pass": passed, "note": note})

        def per_dev(row: Row) -> float:
            assert row.wall_s is not None and row.devices
            return row.wall_s / row.devices

        if push is not None and push.ideal_s:
            ratio = push.wall_s / push.ideal_s if push.wall_s else None
            ratios["push-ca / ideal"] = _round(ratio, 3)
            target("push-ca within 1.3x of the ideal bound", "<= 1.3", ratio,
                   None if ratio is None else ratio <= 1.3,
                   f"N={push.devices}, P={push.parallel}")
        for base in ("script", "ansible"):
            other = good(base)
            if push is not None and other is not None:
                faster = per_dev(other) / per_dev(push)
                ratios[f"push-ca / {base} (wall per device)"] = _round(1 / faster, 4)
                ratios[f"{base} / push-ca (x faster)"] = _round(faster, 2)
                target(f"push-ca >= 10x faster than {base} per device", ">= 10", faster,
                       faster >= 10, f"certfleet N={push.devices}, {base} N={other.devices}")
            else:
                why = ("needs the push-ca row" if push is None else
                       rows[base].status if base in rows else "not run")
                target(f"push-ca >= 10x faster than {base} per device", ">= 10", None, None, why)
        for row in (push, status):
            if row is not None and row.cpu_s is not None and row.devices:
                per = row.cpu_s / row.devices * 1000
                target(f"{row.name} client CPU < 2 ms/device", "< 2 ms", per, per < 2)
        floor = good("floor")
        floor_per: float | None = None
        if floor is not None and floor.cpu_s:
            floor_per = floor.cpu_s / (floor.devices or 1)
            ratios["floor client CPU ms/device"] = _round(floor_per * 1000, 3)
            if floor.extra.get("uvloop_cpu_s"):
                ratios["floor client on uvloop CPU ms/device"] = _round(
                    floor.extra["uvloop_cpu_s"] / (floor.devices or 1) * 1000, 3)
            if floor.extra.get("h11_cycle_ms_per_device"):
                ratios["h11 cycle alone (6 requests) ms/device"] = floor.extra[
                    "h11_cycle_ms_per_device"]
                ratios["h11 cycle alone / floor CPU per device"] = _round(
                    floor.extra["h11_cycle_ms_per_device"] / (floor_per * 1000), 3)
        for label, row in (("status", status), ("push-ca", push)):
            name = f"{label} client CPU <= 1.3x the floor's"
            if row is None or floor_per is None or not row.cpu_s:
                target(name, "<= 1.3", None, None, "needs the floor row and this row")
                continue
            ratio = (row.cpu_s / (row.devices or 1)) / floor_per
            ratios[f"{row.name} CPU / floor CPU (per device)"] = _round(ratio, 3)
            how = "same run"
            pairs = list(zip(row.extra.get("rounds_cpu_s", []),
                             row.extra.get("paired_floor_cpu_s", []), strict=False))
            if pairs:
                # each round against the floor run right after it, the median of the rounds
                each = sorted(cpu / floor_cpu for cpu, floor_cpu in pairs)
                ratio = statistics.median(each)
                ratios[f"{row.name} CPU / floor CPU, round by round"] = [
                    _round(cpu / floor_cpu, 3) for cpu, floor_cpu in pairs]
                how = f"median of {len(pairs)} rounds, each against the floor run after it"
            uv_pairs = list(zip(row.extra.get("rounds_cpu_s", []),
                                row.extra.get("paired_floor_uvloop_cpu_s", []), strict=False))
            if uv_pairs:
                # not the target's yardstick (that is asyncio's loop, as the issue set it):
                # certfleet's distance to a floor client on certfleet's own loop
                ratios[f"{row.name} CPU / floor-on-uvloop CPU, round by round"] = [
                    _round(cpu / floor_cpu, 3) for cpu, floor_cpu in uv_pairs]
            target(name, "<= 1.3", ratio, ratio <= 1.3,
                   f"{how}; the floor does status's 6 requests" if row is push else how)
        kc, ko = good("keygen-certfleet"), good("keygen-openssl")
        if kc is not None and ko is not None:
            share = kc.extra["keys_per_s"] / ko.extra["keys_per_s"]
            ratios["keygen certfleet / openssl all cores"] = _round(share, 3)
            target("keygen >= 85% of all-core openssl", ">= 0.85", share, share >= 0.85,
                   f"{kc.extra.get('openssl')} vs CLI {ko.extra.get('openssl')}")
        kl = good("keygen-library")
        if kc is not None and kl is not None:
            share = kc.extra["keys_per_s"] / kl.extra["keys_per_s"]
            ratios["keygen certfleet / same OpenSSL all cores"] = _round(share, 3)
            target("keygen >= 85% of all cores, same OpenSSL (stricter)", ">= 0.85", share,
                   share >= 0.85, "generate_private_key loop per core")
        else:
            target("keygen >= 85% of all-core openssl", ">= 0.85", None, None, "not run")
        if rotate is not None and rotate.extra.get("keygen_alone_s"):
            share = (rotate.wall_s or 0) / rotate.extra["keygen_alone_s"]
            ratios["rotate / keygen alone"] = _round(share, 3)
            target("rotate <= keygen alone x 1.2", "<= 1.2", share, share <= 1.2,
                   f"N={rotate.devices}; keygen alone = N / certfleet keys/s, measured right "
                   "before and after the rotation")
        else:
            target("rotate <= keygen alone x 1.2", "<= 1.2", None, None,
                   "needs the rotate and keygen rows")
        if rotate is not None and rotate.tree_cpu_s and rotate.sim_cpu_s and rotate.wall_s:
            # every process of the run (client, key workers, roomsim) shares these cores: no
            # overlap can finish sooner than their CPU time spread over all of them
            cores = os.cpu_count() or 1
            cpu_floor = (rotate.tree_cpu_s + rotate.sim_cpu_s) / cores
            rotate.extra["cpu_floor_s"] = round(cpu_floor, 3)
            ratios["rotate / CPU floor (client tree + roomsim CPU / cores)"] = _round(
                rotate.wall_s / cpu_floor, 3)
            if rotate.extra.get("keygen_alone_s"):
                ratios["rotate CPU floor / keygen alone"] = _round(
                    cpu_floor / rotate.extra["keygen_alone_s"], 3)
            # what each rotated device costs in CPU against what its key alone costs: the
            # client's share is certfleet's; roomsim's stands for the device's own CPU, which a
            # real fleet does not take from the machine running certfleet
            bracketing = rotate.extra.get("keygen_cpu_s_per_key_before_after")
            if bracketing and rotate.devices:
                # a key's CPU (the pool's warm-up keys counted), right before and after
                per_key = statistics.mean(bracketing)
                client = rotate.tree_cpu_s / rotate.devices
                ratios["rotate client CPU per device (key workers incl.) / keygen CPU per key"] = \
                    _round(client / per_key, 3)
                ratios["rotate client + roomsim CPU per device / keygen CPU per key"] = _round(
                    (client + rotate.sim_cpu_s / rotate.devices) / per_key, 3)
        for name in ("status", "rotate"):
            row = good(name)
            if row is not None and row.ideal_s and row.wall_s:
                ratios[f"{name} / ideal"] = _round(row.wall_s / row.ideal_s, 3)
        mem = good("memory")
        if mem is not None and mem.peak_rss_mb is not None:
            target("status peak client RSS < 250 MB on 10,000 devices", "< 250 MB",
                   mem.peak_rss_mb, mem.peak_rss_mb < 250 if mem.devices == 10000 else None,
                   f"measured on {mem.devices} devices")
        else:
            target("status peak client RSS < 250 MB on 10,000 devices", "< 250 MB", None, None,
                   "not run")
        growth_figures(rows, self.args.growth, target, ratios)
        cloud_targets(rows, target, ratios)
        return ratios, targets

    def document(self) -> dict[str, Any]:
        ratios, targets = self.comparisons()
        a = self.args
        return {
            "schema": SCHEMA,
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "platform": platform.platform(),
                        # what else the machine was doing: 1/5/15-minute load at start and end
                        "load_average_start": [round(x, 2) for x in self.load_start],
                        "load_average_end": [round(x, 2) for x in os.getloadavg()],
                        "bytecode": self.bytecode_note,
                        "event_loop": f"uvloop {UVLOOP}" if UVLOOP else "asyncio"},
            "params": {"devices": a.devices, "baseline_devices": a.baseline_devices,
                       "memory_devices": a.memory_devices, "delay_ms": a.delay_ms,
                       "parallel": a.parallel, "keys": a.keys, "quick": a.quick,
                       "rounds": a.rounds, "growth": a.growth,
                       "cloud_devices": a.cloud_devices, "cloud_rate": a.cloud_rate,
                       "cloud_client_rate": a.cloud_client_rate,
                       "cloud_shards": a.cloud_shards, "cloud_hammer_rate": a.cloud_hammer_rate,
                       "only": sorted(a.only), "script_workers": SCRIPT_WORKERS,
                       "ansible_forks": ANSIBLE_FORKS},
            "ideal_model": (
                "ideal = ceil(N / P) x t_dev(k): k = mean xAPI requests per device as the client "
                "reported them; t_dev = time for k sequential requests each answered d after "
                "arrival and passing the device's token bucket (session 15/s burst 15, Basic "
                "1/s burst 1); zero client CPU, zero network time, handshakes not counted"),
            "rows": {name: row.as_json() for name, row in self.rows.items()},
            "ratios": ratios,
            "targets": targets,
            "profiles": self.profiles,
        }


def wait_all(procs: list[subprocess.Popen[bytes]]) -> list[int]:
    """Exit codes of processes started in their own sessions; on Ctrl-C or SIGTERM their
    whole process groups (a shell loop and the command it runs) are stopped, not left behind."""
    try:
        return [p.wait() for p in procs]
    except BaseException:
        for proc in procs:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            proc.wait()
        raise


# ----------------------------------------------------------------------------- output


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def render(doc: dict[str, Any]) -> str:
    p = doc["params"]
    out = [f"certfleet fleet benchmark  ({doc['machine']['cpus']} cpus, Python "
           f"{doc['machine']['python']}; delay {p['delay_ms']:g} ms/request; certfleet "
           f"--parallel {p['parallel']}; script {p['script_workers']} threads; ansible forks "
           f"{p['ansible_forks']})"]
    machine = doc["machine"]
    if "load_average_start" in machine:
        out.append(f"load average (1/5/15 min) {machine['load_average_start']} at start, "
                   f"{machine['load_average_end']} at end; {machine['bytecode']}")
    if "event_loop" in machine:
        out.append(f"certfleet's event loop: {machine['event_loop']} (the floor client's "
                   "yardstick runs on asyncio's)")
    out.append("")
    head = (f"{'row':<34} {'N':>6} {'wall s':>8} {'ms/dev':>7} {'cpu ms/dev':>10} "
            f"{'RSS MB':>7} {'req/dev':>7} {'ideal s':>8} {'x ideal':>7} {'sim ms/dev':>10}"
            f"  status")
    out += [head, "-" * len(head)]
    for name, row in doc["rows"].items():
        if name.startswith("keygen"):
            continue
        out.append(
            f"{row['label'][:34]:<34} {_fmt(row['devices'], 'd'):>6}"
            f" {_fmt(row['wall_s'], '.2f'):>8}"
            f" {_fmt(row['wall_ms_per_device'], '.2f'):>7}"
            f" {_fmt(row['cpu_ms_per_device'], '.2f'):>10} {_fmt(row['peak_rss_mb'], '.0f'):>7}"
            f" {_fmt(row['requests_per_device'], '.1f'):>7} {_fmt(row['ideal_s'], '.2f'):>8}"
            f" {_fmt(row['vs_ideal'], '.2f'):>7} {_fmt(row['sim_cpu_ms_per_device'], '.2f'):>10}"
            f"  {row['status']}")
    rotate = doc["rows"].get("rotate")
    if rotate and rotate.get("tree_cpu_ms_per_device") is not None:
        out.append(f"  rotate: cpu of the whole client tree incl. key workers (sampled) "
                   f"{rotate['tree_cpu_ms_per_device']:.2f} ms/device")
    out += cloud_lines(doc["rows"])
    out += ["  cpu ms/dev: the client's user+system CPU (os.wait4) per device; sim ms/dev: "
            "roomsim's CPU per device over the same span (both share this machine's cores)"]
    keyrows = [(n, r) for n, r in doc["rows"].items() if n.startswith("keygen")]
    if keyrows:
        out += ["", f"{'key generation (RSA-2048)':<34} {'keys':>6} {'wall s':>8} {'keys/s':>8} "
                    f"{'procs':>6}  status"]
        for _, row in keyrows:
            extra = row["extra"]
            out.append(f"{row['label'][:34]:<34} {_fmt(extra.get('keys'), 'd'):>6} "
                       f"{_fmt(row['wall_s'], '.2f'):>8} {_fmt(extra.get('keys_per_s'), '.2f'):>8}"
                       f" {_fmt(row['parallel'], 'd'):>6}  {row['status']}")
    baseline_n = {doc["rows"][b]["devices"] for b in ("script", "ansible")
                  if b in doc["rows"] and doc["rows"][b]["devices"]}
    if baseline_n and p["devices"] not in baseline_n:
        out += ["", f"Baselines ran on {', '.join(map(str, sorted(baseline_n)))} devices, "
                    f"certfleet on {p['devices']}: they are compared per device (wall / N)."]
    if doc["ratios"]:
        out += ["", "ratios"]
        out += [f"  {name:<44} {value}" for name, value in doc["ratios"].items()]
    out += ["", "targets (issues 8 and 18)"]
    for t in doc["targets"]:
        verdict = {True: "PASS", False: "MISS", None: "n/a "}[t["pass"]]
        note = f"  ({t['note']})" if t["note"] else ""
        out.append(f"  {verdict}  {t['target']:<52} wanted {t['wanted']:<9} measured "
                   f"{_fmt(t['measured'], '.3f')}{note}")
    out += ["", "ideal bound: " + doc["ideal_model"]]
    for name, row in doc["rows"].items():
        if row.get("ideal_formula"):
            out.append(f"  {name}: {row['ideal_formula']}")
    for name, top in doc.get("profiles", {}).items():
        for order, lines in top.items():
            out += ["", f"profile {name}: top 25 by {order}",
                    f"{'ncalls':>9} {'tottime':>9} {'cumtime':>9}", *lines]
    return "\n".join(out)


# ----------------------------------------------------------------------------- main


@contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """SIGTERM (and SIGHUP) unwind like Ctrl-C, so every `finally` stops roomsim."""

    def raise_interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {s: signal.signal(s, raise_interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def raise_open_files_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        epilog="Rows: " + ", ".join(ROWS) + ". See the module docstring for what each does.")
    parser.add_argument("--devices", type=int, help="simulated devices (1000; --quick 100)")
    parser.add_argument("--baseline-devices", type=int,
                        help="devices for the script and ansible baselines (200; --quick 50)")
    parser.add_argument("--memory-devices", type=int,
                        help="devices for the memory run (10000; --quick 1000)")
    parser.add_argument("--delay-ms", type=float, default=30.0,
                        help="roomsim's added delay per request, ms (30)")
    parser.add_argument("--parallel", type=int, default=50,
                        help="certfleet --parallel (50, as ansible's forks)")
    parser.add_argument("--keys", type=int,
                        help="keys per key generation measurement (= --devices; --quick 16)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run push-ca and status this many times, keep the fastest (1)")
    parser.add_argument("--growth", help="comma list of fleet sizes for the growth row "
                        "(1000,5000,10000; --quick 100,300,1000)")
    parser.add_argument("--cloud-devices", type=int,
                        help="devices behind the simulated cloud (900; --quick 40)")
    parser.add_argument("--cloud-rate", type=int, default=3000,
                        help="the simulated cloud's requests a minute per token (3000)")
    parser.add_argument("--cloud-client-rate", type=float,
                        help="certfleet's api_rate_per_minute (default: 93%% of --cloud-rate, "
                             "as roomsim's cloud inventory has it)")
    parser.add_argument("--cloud-shards", type=int, default=2,
                        help="shards, each with its own token, for the cloud-shard row (2)")
    parser.add_argument("--cloud-hammer-rate", type=float,
                        help="requests a minute of the other process on the shared token "
                             "(default: half of --cloud-rate)")
    parser.add_argument("--only", help="comma list of rows to run: " + ",".join(ROWS))
    parser.add_argument("--skip-ansible", action="store_true", help="leave out the ansible row")
    parser.add_argument("--quick", action="store_true", help="a reduced run, under a minute")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="also run push-ca and status once more under cProfile; write "
                             "DIR/<row>-profile.prof and DIR/<row>-top.txt (top 25 functions)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures here")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary folder (roomsim state, client outputs)")
    args = parser.parse_args(argv)
    quick = args.quick
    args.devices = args.devices or (100 if quick else 1000)
    args.baseline_devices = args.baseline_devices or (50 if quick else 200)
    args.baseline_devices = min(args.baseline_devices, args.devices)
    args.memory_devices = args.memory_devices or (1000 if quick else 10000)
    args.keys = args.keys or (16 if quick else args.devices)
    args.cloud_devices = args.cloud_devices or (40 if quick else 900)
    args.cloud_client_rate = rate_of(args.cloud_client_rate, args.cloud_rate)
    args.cloud_hammer_rate = args.cloud_hammer_rate or args.cloud_rate / 2
    try:
        args.growth = sorted({int(part) for part in (
            args.growth or ("100,300,1000" if quick else "1000,5000,10000")).split(",")
            if part.strip()})
    except ValueError:
        parser.error(f"--growth takes sizes like 1000,5000,10000, not {args.growth!r}")
    if any(size < 1 for size in args.growth):
        parser.error("--growth sizes must be at least 1")
    only = set(ROWS) if args.only is None else {
        part.strip() for part in args.only.split(",") if part.strip()}
    unknown = only - set(ROWS)
    if unknown:
        parser.error(f"--only: unknown rows {sorted(unknown)}; known: {', '.join(ROWS)}")
    args.only = only
    for name in ("devices", "baseline_devices", "memory_devices", "keys", "parallel", "rounds",
                 "cloud_devices", "cloud_rate", "cloud_shards"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.delay_ms < 0:
        parser.error("--delay-ms must be >= 0")
    if args.profile is not None:
        args.profile = args.profile.resolve()
        args.profile.mkdir(parents=True, exist_ok=True)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_open_files_limit()
    dont_write = os.environ.get("PYTHONDONTWRITEBYTECODE")
    bytecode_note = run_from_bytecode()
    work = Path(tempfile.mkdtemp(prefix="certfleet-bench-"))
    bench = Bench(args, work)
    bench.bytecode_note = bytecode_note
    interrupted = False
    try:
        with stop_on_sigterm():
            bench.run()
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: roomsim stopped; partial figures follow", file=sys.stderr)
    finally:
        if dont_write is not None:  # as it was for whoever called main() (a test, say)
            os.environ["PYTHONDONTWRITEBYTECODE"] = dont_write
        if bench.sim is not None:
            bench.sim.stop()
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    doc = bench.document()
    doc["interrupted"] = interrupted
    print(render(doc))
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    failed = [r for r in bench.rows.values() if r.status.startswith("failed")]
    if interrupted:
        return 130
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
