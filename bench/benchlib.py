"""What every benchmark row is made of: a row of figures, a client run as a child process and
measured by the kernel (os.wait4, plus a /proc sampler for process trees), roomsim in its own
process, fresh CAs, and the ideal bound the devices' own limits impose. Used by
bench/fleet_bench.py and the row modules next to it (cloud_rows.py, growth_rows.py)."""

from __future__ import annotations

import ctypes
import hashlib
import ipaddress
import json
import math
import os
import re
import selectors
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
READY_TIMEOUT = 900.0
RUN_TIMEOUT = 3600.0


# roomsim's per-device limits (roomsim/server.py ServerSettings, the defaults are a real
# device's): requests per second and token-bucket burst, per auth class.
SESSION_RATE, SESSION_BURST = 15.0, 15.0
BASIC_RATE, BASIC_BURST = 1.0, 1.0


# ----------------------------------------------------------------------------- figures


@dataclass
class Row:
    name: str
    label: str
    status: str = "not run"  # ok | failed: ... | unavailable: ... | skipped: ...
    devices: int | None = None
    succeeded: int | None = None
    parallel: int | None = None
    wall_s: float | None = None
    cpu_s: float | None = None  # the client process and the children it reaped (wait4)
    tree_cpu_s: float | None = None  # every process under the client, sampled from /proc
    peak_rss_mb: float | None = None  # ru_maxrss of the client (largest process it reaped)
    sim_cpu_s: float | None = None  # roomsim over the same span
    requests_per_device: float | None = None
    ideal_s: float | None = None
    ideal_formula: str | None = None
    exit_code: int | None = None
    command: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def per_device(self, value: float | None) -> float | None:
        if value is None or not self.devices:
            return None
        return value / self.devices

    def as_json(self) -> dict[str, Any]:
        doc = asdict(self)
        for key in ("wall_s", "cpu_s", "tree_cpu_s", "sim_cpu_s"):
            per = self.per_device(doc[key])
            doc[key.replace("_s", "_ms_per_device")] = _round(per * 1000 if per else per)
        doc["vs_ideal"] = _round(self.wall_s / self.ideal_s) if (
            self.wall_s and self.ideal_s) else None
        for key, value in list(doc.items()):
            if isinstance(value, float):
                doc[key] = _round(value)
        return doc


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


class BenchError(Exception):
    """A row could not be measured (the client failed, a device did not succeed, ...)."""


# ----------------------------------------------------------------------------- processes


def _linux_parent_death_signal() -> Callable[[], None] | None:
    """A preexec_fn that makes the child get SIGTERM when this process dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None

    def set_pdeathsig() -> None:
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return set_pdeathsig


def _proc_cpu(pid: int) -> float | None:
    """user + system seconds of a running process (its own, Linux /proc), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


class TreeSampler(threading.Thread):
    """Samples, every `interval` s, the CPU time (own user + system) and RSS of every process
    under `root` from /proc. The sum of each process's last sample is the tree's CPU time: it
    includes workers the client does not reap itself (KeyFactory's forkserver children), which
    wait4 cannot see. A process that ends between two samples loses at most `interval`."""

    def __init__(self, root: int, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.interval = interval
        self.cpu: dict[tuple[int, str], float] = {}
        self.peak_tree_rss_mb = 0.0
        self.max_processes = 0
        self._halt = threading.Event()
        self._ticks = os.sysconf("SC_CLK_TCK")
        self._page_mb = os.sysconf("SC_PAGE_SIZE") / 2**20

    def _scan(self) -> None:
        parents: dict[int, int] = {}
        stats: dict[int, list[str]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            pid = int(entry)
            parents[pid] = int(fields[1])
            stats[pid] = fields
        tree, frontier = set(), {self.root}
        while frontier:
            tree |= frontier
            frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - tree
        rss = 0.0
        for pid in tree & stats.keys():
            fields = stats[pid]
            self.cpu[(pid, fields[19])] = (int(fields[11]) + int(fields[12])) / self._ticks
            rss += int(fields[21]) * self._page_mb
        self.peak_tree_rss_mb = max(self.peak_tree_rss_mb, rss)
        self.max_processes = max(self.max_processes, len(tree & stats.keys()))

    def run(self) -> None:
        while not self._halt.is_set():
            self._scan()
            self._halt.wait(self.interval)

    def stop(self) -> float:
        self._halt.set()
        self.join()
        return sum(self.cpu.values())


@dataclass
class Measured:
    exit_code: int
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    stdout: str
    stderr: str
    tree_cpu_s: float | None = None
    peak_tree_rss_mb: float | None = None
    sim_cpu_s: float | None = None

    def json(self, who: str) -> Any:
        """The JSON document the client printed (BenchError naming ``who`` if there is none)."""
        try:
            return json.loads(self.stdout)
        except ValueError:
            raise BenchError(f"{who} exited {self.exit_code} without JSON: "
                             f"{self.stderr[-1500:]}") from None


def run_from_bytecode() -> str:
    """Every process the benchmark starts runs certfleet from bytecode, as an installed package
    does (pip compiles on install): PYTHONDONTWRITEBYTECODE is dropped from the environment and
    the source tree is compiled once here, so no measured run pays for compiling ~150 modules
    (about 0.15 s of CPU per run when it is set, as on some CI machines). Returns what was done,
    for the run's header."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    folders = [str(ROOT / name) for name in ("certfleet", "cli", "fleet", "roomsim", "bench")]
    done = subprocess.run([sys.executable, "-m", "compileall", "-q", *folders],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchError(f"compileall failed: {done.stdout[-800:]}{done.stderr[-800:]}")
    return "bytecode compiled before the first row (PYTHONDONTWRITEBYTECODE unset)"


def run_measured(command: list[str], work: Path, tag: str, *, env: dict[str, str] | None = None,
                 sim_pid: int | None = None, sample_tree: bool = False,
                 timeout: float = RUN_TIMEOUT) -> Measured:
    """Run `command` as a child, stdout/stderr to files, and measure it with os.wait4."""
    out_path, err_path = work / f"{tag}.stdout", work / f"{tag}.stderr"
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    with out_path.open("wb") as out, err_path.open("wb") as err:
        sim_before = _proc_cpu(sim_pid) if sim_pid else None
        started = time.perf_counter()
        proc = subprocess.Popen(command, cwd=ROOT, env=full_env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err)
        sampler = TreeSampler(proc.pid) if sample_tree and Path("/proc").is_dir() else None
        if sampler is not None:
            sampler.start()
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            timer.cancel()
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        sim_after = _proc_cpu(sim_pid) if sim_pid else None
        tree_cpu = sampler.stop() if sampler is not None else None
    cpu = usage.ru_utime + usage.ru_stime
    if tree_cpu is not None:
        tree_cpu = max(tree_cpu, cpu)
    return Measured(
        exit_code=proc.returncode, wall_s=wall, cpu_s=cpu,
        peak_rss_mb=usage.ru_maxrss / 1024,  # KiB on Linux
        stdout=out_path.read_text(errors="replace"), stderr=err_path.read_text(errors="replace"),
        tree_cpu_s=tree_cpu,
        peak_tree_rss_mb=sampler.peak_tree_rss_mb if sampler is not None else None,
        sim_cpu_s=(sim_after - sim_before) if sim_before is not None and sim_after is not None
        else None,
    )


class Sim:
    """`python -m certfleet.roomsim serve` in its own process, stopped on exit whatever happens."""

    def __init__(self, devices: int, state: Path, delay_s: float) -> None:
        self.devices = devices
        self.state = state
        self.inventory = state / "inventory.yaml"
        self.delay_s = delay_s
        self.proc: subprocess.Popen[str] | None = None
        self.start_s: float | None = None

    #: what the child reads: nothing, or commands (a pipe; see bench/cloud_sim.py)
    stdin: int = subprocess.DEVNULL

    def command(self) -> list[str]:
        return [sys.executable, "-m", "certfleet.roomsim", "serve", "--devices", str(self.devices),
                "--state", str(self.state), "--inventory-out", str(self.inventory),
                "--request-delay", repr(self.delay_s)]

    def start(self) -> Sim:
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            self.command(),
            cwd=ROOT, stdin=self.stdin, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
            preexec_fn=_linux_parent_death_signal(),  # before any thread of ours starts
        )
        assert self.proc.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if not selector.select(timeout=1.0):
                if self.proc.poll() is not None:
                    raise BenchError(f"roomsim exited with {self.proc.returncode} before ready")
                continue
            line = self.proc.stdout.readline()
            if line.strip() == "ready":
                self.start_s = time.perf_counter() - started
                check_loopback(self.inventory)
                return self
            if not line:
                raise BenchError(f"roomsim exited with {self.proc.wait()} before it was ready")
        self.stop()
        raise BenchError(f"roomsim was not ready within {READY_TIMEOUT:g}s")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def ca_path(self) -> Path:
        return self.state / "sim-ca.pem"

    @property
    def password_path(self) -> Path:
        return self.state / "admin-password"

    def device_cas(self, name: str) -> set[str]:
        """SHA-1s of the CAs device `name` has stored (its roomsim state file)."""
        data = json.loads((self.state / "devices" / name / "state.json").read_text())
        return {sha1_of_pem(pem) for pem in data.get("ca", [])}

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> Sim:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def check_loopback(inventory: Path) -> None:
    data = yaml.safe_load(inventory.read_text())
    for name, device in data["devices"].items():
        if not ipaddress.ip_address(device["host"]).is_loopback:
            raise BenchError(f"{name}: {device['host']} is not a loopback address; refusing")


# ----------------------------------------------------------------------------- material


def make_ca(common_name: str, folder: Path) -> tuple[Path, str]:
    """A fresh self-signed CA certificate (EC P-256) nobody has seen: (PEM path, SHA-1)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "certfleet bench"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    path = folder / (re.sub(r"[^a-z0-9]+", "-", common_name.lower()).strip("-") + ".pem")
    path.write_text(pem)
    return path, sha1_of_pem(pem)


def sha1_of_pem(pem: str) -> str:
    return hashlib.sha1(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


def openssl_versions() -> dict[str, str]:
    """The OpenSSL of the `openssl` command and the one inside `cryptography` (certfleet's):
    they differ, and RSA key generation speed differs a lot between OpenSSL releases."""
    from cryptography.hazmat.backends.openssl import backend

    cli = "none"
    if shutil.which("openssl"):
        done = subprocess.run(["openssl", "version"], capture_output=True, text=True,
                              check=False, timeout=60)
        cli = done.stdout.strip() or "unknown"
    return {"cli": cli, "cryptography": backend.openssl_version_text()}


def device_time(k: float, delay: float, rate: float, burst: float) -> float:
    """Seconds one device needs for k sequential requests when each is answered `delay` after
    it arrives and then passes roomsim's token bucket (rate/s, burst), with no client or
    network time at all. Fractional k is interpolated."""
    whole = max(0, math.floor(k))

    def run(n: int) -> float:
        clock, tokens, stamp = 0.0, burst, 0.0
        for _ in range(n):
            clock += delay
            tokens = min(burst, tokens + (clock - stamp) * rate)
            stamp = clock
            if tokens >= 1:
                tokens -= 1
            else:
                clock += (1 - tokens) / rate
                tokens, stamp = 0.0, clock
        return clock

    low = run(whole)
    return low + (run(whole + 1) - low) * (k - whole) if k > whole else low


def ideal(devices: int, parallel: int, k: float, delay: float, *, basic: bool = False
          ) -> tuple[float, str]:
    rate, burst = (BASIC_RATE, BASIC_BURST) if basic else (SESSION_RATE, SESSION_BURST)
    per_device = device_time(k, delay, rate, burst)
    rounds = math.ceil(devices / parallel)
    auth = "Basic 1 req/s, burst 1" if basic else "session 15 req/s, burst 15"
    return rounds * per_device, (
        f"ceil(N/P) x t_dev(k) = ceil({devices}/{parallel}) x t_dev({k:g} requests, "
        f"d={delay * 1000:g} ms, {auth}) = {rounds} x {per_device:.3f} s"
    )


