"""Pytest fixture ``scep_server``: a real SCEP server on 127.0.0.1 for the test session.

It is Debian's ``scep`` package (micromdm scepserver 2.1.0), started by
``<repo>/../shared/scripts/scep-server.sh`` in its own network namespace behind a loopback-only
socat bridge, with a fresh CA depot in a temporary directory, a free port and a random
challenge. The script installs ``scep``/``socat`` when they are missing and we are root; where
that cannot happen (no script, not root, no apt, no network namespaces) the tests that need the
server are skipped, never failed. Use it from a conftest: ``from scep_fixture import
scep_server``.
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["SCRIPT", "ScepServer", "scep_server"]

#: <repo>/../shared/scripts/scep-server.sh
SCRIPT = Path(__file__).resolve().parents[1].parent / "shared" / "scripts" / "scep-server.sh"
SKIP_REASON = "needs Debian's scep package (apt-get install scep socat)"

# exit codes of scep-server.sh
_PORT_BUSY = 3
_NO_NETNS = 6


@dataclass(frozen=True)
class ScepServer:
    url: str
    ca_sha256: str
    ca_pem: Path
    challenge: str
    depot: Path
    pids: tuple[int, ...]

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


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _parse(output: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in output.splitlines():
        for token in shlex.split(line):
            name, sep, value = token.partition("=")
            if sep:
                values[name] = value
    return values


def _start(depot: Path, challenge: str) -> dict[str, str]:
    if sys.platform != "linux" or not SCRIPT.is_file():
        pytest.skip(f"{SKIP_REASON}, and {SCRIPT} on Linux")
    have_server = shutil.which("scepserver") is not None
    if not have_server and os.geteuid() != 0:
        pytest.skip(f"{SKIP_REASON} (scepserver is missing and we are not root)")
    if os.geteuid() != 0:
        pytest.skip(f"{SKIP_REASON}, and root to keep it on 127.0.0.1 (unshare --net)")
    for _attempt in range(3):
        result = subprocess.run(
            ["bash", str(SCRIPT), str(depot), str(_free_port()), challenge],
            capture_output=True, text=True, timeout=300, check=False,
        )
        if result.returncode != _PORT_BUSY:  # someone took the free port meanwhile: retry
            break
    if result.returncode == 0:
        return _parse(result.stdout)
    if result.returncode == _NO_NETNS or shutil.which("scepserver") is None:
        pytest.skip(f"{SKIP_REASON}: {result.stderr.strip().splitlines()[-1:]}")
    raise RuntimeError(f"{SCRIPT} failed with exit code {result.returncode}:\n{result.stderr}")


@pytest.fixture(scope="session")
def scep_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScepServer]:
    """A running scepserver on 127.0.0.1; stopped (by the PIDs it recorded) at the end."""
    depot = tmp_path_factory.mktemp("scep") / "depot"
    challenge = secrets.token_urlsafe(18)
    values = _start(depot, challenge)
    try:
        yield ScepServer(
            url=values["SCEP_URL"],
            ca_sha256=values["SCEP_CA_SHA256"],
            ca_pem=Path(values["SCEP_CA_PEM"]),
            challenge=challenge,
            depot=depot,
            pids=tuple(int(pid) for pid in values.get("SCEP_PIDS", "").split()),
        )
    finally:
        subprocess.run(["bash", str(SCRIPT), "--stop", str(depot)],
                       capture_output=True, text=True, timeout=60, check=False)
