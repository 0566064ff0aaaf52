"""A real SCEP server on 127.0.0.1 for the tests, started and stopped by the project itself.

The server is Debian's ``scep`` package (micromdm scepserver 2.1.0). That release has only
``-port`` and listens on every interface, so it never runs in the host's network: it runs in a
network namespace of its own (``unshare --net``, only ``lo`` up inside), where a socat relays
its port to a unix socket, and a second socat on the host listens on ``127.0.0.1:PORT`` only
and relays to that socket. Nothing is reachable from outside the machine.

Each server gets a fresh CA depot (``scepserver ca -init``), a random challenge,
``-allowrenew 0`` (enrolling a subject again is always allowed) and is ready once
``GetCACaps`` answers; it is stopped by the process groups it was started in. Under
pytest-xdist every worker starts its own (a session fixture per worker, a free port each).

Fixtures (import them into a conftest): ``scep_server`` (one per session) and
``scep_servers`` (``start(name, crtvalid_days=...)``: one per name per session). A test that
needs the server is skipped only when a program it needs is missing, with the ``apt-get``
line that installs it, or where network namespaces cannot be made at all.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from debian_packages import missing

__all__ = ["ScepServer", "free_port", "missing_reason", "scep_server", "scep_servers",
           "start_scep_server"]

#: program -> the Debian package that brings it
PROGRAMS = {"scepserver": "scep", "socat": "socat", "ip": "iproute2", "unshare": "util-linux"}
#: scepserver's port inside its own namespace (nothing else listens there)
INNER_PORT = 8080
READY_TIMEOUT = 20.0


def missing_reason() -> str | None:
    """Why the server cannot run here (the apt-get line to fix it), or None when it can."""
    if sys.platform != "linux":
        return "needs Linux network namespaces to keep scepserver on 127.0.0.1"
    absent = sorted({pkg for prog, pkg in PROGRAMS.items() if shutil.which(prog) is None})
    if absent:
        return (f"needs Debian's {', '.join(absent)}: "
                f"apt-get install -y --no-install-recommends {' '.join(absent)}")
    probe = subprocess.run([*_unshare(), "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return ("cannot make a network namespace to keep scepserver on 127.0.0.1 "
                f"({' '.join(_unshare())}: {probe.stderr.strip()})")
    return None


def _unshare() -> list[str]:
    # root makes the namespace directly; anyone else needs a user namespace to own it
    return ["unshare", "--net"] if os.geteuid() == 0 else ["unshare", "--net", "--map-root-user"]


@dataclass
class ScepServer:
    """A running scepserver; ``stop()`` ends every process it started."""

    url: str
    ca_pem: Path
    challenge: str
    depot: Path
    _sock_dir: Path = field(repr=False)
    _groups: list[subprocess.Popen[bytes]] = field(default_factory=list, repr=False)

    @property
    def ca(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.ca_pem.read_bytes())

    @property
    def ca_sha256(self) -> str:
        """SHA-256 of the CA certificate's DER, lowercase hex without colons."""
        return hashlib.sha256(self.ca.public_bytes(serialization.Encoding.DER)).hexdigest()

    @property
    def ca_sha1(self) -> str:
        return self.ca.fingerprint(hashes.SHA1()).hex()

    @property
    def log(self) -> Path:
        return self.depot / "scepserver.log"

    def index_lines(self) -> list[str]:
        """The depot's index.txt: one line per certificate the server issued."""
        path = self.depot / "index.txt"
        return path.read_text().splitlines() if path.exists() else []

    def issued_file(self, cn: str, serial: int) -> Path:
        """Where the server keeps the certificate it issued (``<CN>.<serial>.pem``)."""
        return self.depot / f"{cn}.{serial}.pem"

    def alive(self) -> bool:
        return all(proc.poll() is None for proc in self._groups)

    def stop(self) -> None:
        """End every process this server started, bridge first."""
        for proc in reversed(self._groups):
            _end_group(proc)
        self._groups.clear()
        shutil.rmtree(self._sock_dir, ignore_errors=True)


def _end_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process (which ends and reaps its own children), then SIGKILL to its
    whole process group (start_new_session=True: the group id is its pid) if it lingers."""
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# no proxy from the environment: the probe goes straight to 127.0.0.1
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _caps(url: str) -> str:
    try:
        with _DIRECT.open(f"{url}?operation=GetCACaps", timeout=2) as reply:
            return str(reply.read().decode("ascii", "replace"))
    except (OSError, urllib.error.URLError):
        return ""


def _init_depot(depot: Path) -> None:
    depot.mkdir(parents=True, exist_ok=True)
    subprocess.run(["scepserver", "ca", "-init", "-depot", str(depot), "-keySize", "2048"],
                   capture_output=True, check=True, timeout=60)


def start_scep_server(depot: Path, *, crtvalid_days: int = 365,
                      challenge: str | None = None) -> ScepServer:
    """Start scepserver on a free 127.0.0.1 port with a new CA in ``depot``; ready on return."""
    _init_depot(depot)
    challenge = challenge or "ch-" + secrets.token_urlsafe(12)
    sock_dir = Path(tempfile.mkdtemp(prefix="scep-"))  # short: a unix socket path is <108 bytes
    sock = sock_dir / "scep.sock"
    args = ["-depot", str(depot), "-port", str(INNER_PORT), "-allowrenew", "0",
            "-crtvalid", str(crtvalid_days), "-challenge", challenge]
    # Inside the namespace: lo up, a socat from the unix socket ($0) to the server's port
    # ($1), and the server. The shell stays as their parent: on SIGTERM it ends both and
    # reaps them, so nothing is left behind.
    inner = ('ip link set lo up || exit 1; '
             'socat "UNIX-LISTEN:$0,fork,mode=600" "TCP:127.0.0.1:$1" & B=$!; shift; '
             'scepserver "$@" & S=$!; '
             'trap \'kill -TERM $S $B 2>/dev/null; wait; exit 0\' TERM INT; '
             'wait $S; kill -TERM $B 2>/dev/null; wait; exit 1')
    with (depot / "scepserver.log").open("ab") as log:
        server = subprocess.Popen(
            [*_unshare(), "--", "sh", "-c", inner, str(sock), str(INNER_PORT), *args],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    running = ScepServer("", depot / "ca.pem", challenge, depot, sock_dir, [server])
    try:
        for _attempt in range(5):  # a free port can be taken before socat binds it: try again
            port = free_port()
            bridge = subprocess.Popen(
                ["socat", f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork",
                 f"UNIX-CONNECT:{sock}"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True)
            running.url = f"http://127.0.0.1:{port}/scep"
            if _wait_ready(running, bridge):
                running._groups.append(bridge)
                return running
            _end_group(bridge)
            if not running.alive():
                break
        log_tail = running.log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"scepserver did not answer GetCACaps on {running.url}:\n{log_tail}")
    except BaseException:
        running.stop()
        raise


def _wait_ready(server: ScepServer, bridge: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if bridge.poll() is not None or not server.alive():
            return False
        if "POSTPKIOperation" in _caps(server.url):
            return True
        time.sleep(0.02)
    return False


@pytest.fixture(scope="session")
def scep_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., ScepServer]]:
    """``start(name, crtvalid_days=365)``: a scepserver with its own CA depot, one per name
    (reused within the session); all of them stopped at the end."""
    reason = missing_reason()
    if reason:
        missing(reason)
    started: dict[str, ScepServer] = {}

    def start(name: str, *, crtvalid_days: int = 365) -> ScepServer:
        if name not in started:
            depot = tmp_path_factory.mktemp(f"scep-{name}") / "depot"
            started[name] = start_scep_server(depot, crtvalid_days=crtvalid_days)
        return started[name]

    try:
        yield start
    finally:
        for server in started.values():
            server.stop()


@pytest.fixture(scope="session")
def scep_server(scep_servers: Callable[..., ScepServer]) -> ScepServer:
    """The session's scepserver on 127.0.0.1 (certificates valid 365 days)."""
    return scep_servers("main")
