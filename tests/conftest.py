"""Shared fixtures: a simulated fleet on loopback, test CAs made in memory, the CLI runner."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from scep_fixture import scep_server, scep_servers  # noqa: F401  (fixtures for every test)
from typer.testing import CliRunner

from certfleet.cli.main import app
from certfleet.fleet.pki.local_ca import LocalCa, create_ca

# Output is checked as a CI job that pipes it sees it (rich's width for a pipe, cli/render.py):
# xdist's workers come with COLUMNS=80 and LINES=24, and a developer's shell may export its
# own; tests that want a width set COLUMNS themselves.
for _name in ("COLUMNS", "LINES"):
    os.environ.pop(_name, None)

# Property tests have no per-example deadline: a parallel worker on a loaded machine is no
# reason to fail one (tests that want a bound on time assert it themselves).
settings.register_profile("certfleet", deadline=None)
settings.load_profile("certfleet")

def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """What `-n auto` (pyproject's addopts) means: two workers per usable core. The tests mostly
    wait (sockets, rate limits, subprocesses): on 2 cores, under the same load, 4 workers ran
    the suite in 3m15s where 2 took 3m56s. PYTEST_XDIST_AUTO_NUM_WORKERS=N sets it."""
    chosen = os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS", "")
    if chosen.isdigit():
        return int(chosen)
    return 2 * len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 4


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tests marked `slow` first (otherwise in their order): parallel workers start them at
    once and fill in around them with the short ones, instead of one starting near the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


# What certfleet runs on besides its declared dependencies (they come with httpx and typer).
TRANSITIVE = ("httpcore", "h11", "anyio", "click")
# Debian programs some tests use: program -> (package, arguments that print its version)
DEBIAN = {
    "scepserver": ("scep", ("-version",)),
    "socat": ("socat", ("-V",)),
    "openssl": ("openssl", ("version",)),
    "chromium": ("chromium", ()),
}


def _dist_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9_.\-]+", requirement)
    return match.group(0) if match else requirement


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "MISSING"


def _program(name: str, args: tuple[str, ...]) -> str:
    path = shutil.which(name)
    if path is None:
        return "missing"
    if not args:
        return "present"
    try:
        done = subprocess.run([path, *args], capture_output=True, text=True, timeout=10,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return "present"
    found = re.search(r"\d+\.\d+(\.\d+)*[a-z]?", done.stdout + done.stderr)
    return found.group(0) if found else "present"


def pytest_report_header(config: pytest.Config) -> list[str]:
    """The versions this run tests: every dependency pyproject.toml declares (and the test
    extras), what they pull in that certfleet relies on, and the Debian programs."""
    project = tomllib.loads((config.rootpath / "pyproject.toml").read_text())["project"]
    runtime = list(dict.fromkeys([_dist_name(r) for r in project["dependencies"]]
                                 + list(TRANSITIVE)))
    test = [_dist_name(r) for r in project["optional-dependencies"]["test"]]
    programs = []
    for name, (package, args) in DEBIAN.items():
        found = _program(name, args)
        programs.append(f"{name} {found}" + (f" (apt-get install {package})"
                                             if found == "missing" else ""))
    return [
        "certfleet deps: " + ", ".join(f"{d} {_version(d)}" for d in runtime),
        "test deps: " + ", ".join(f"{d} {_version(d)}" for d in test),
        "debian: " + ", ".join(programs),
    ]


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_cli(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> CliResult:
    """Run `certfleet ARGS` in-process, stdout and stderr apart."""
    result = CliRunner(env=env).invoke(app, list(args), input=input, catch_exceptions=False)
    return CliResult(result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def cli() -> Any:
    return run_cli


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Any]:
    """Five simulated devices with real TLS on 127.0.0.1; fast limits are the real ones."""
    from certfleet.roomsim import SimFleetThread

    with SimFleetThread(tmp_path / "sim", devices=5) as fleet:
        yield fleet


@pytest.fixture
def corp_ca(tmp_path: Path) -> tuple[LocalCa, Path]:
    ca = create_ca("Example Corp Root CA", organization="Example Corp")
    path = tmp_path / "corp-root.pem"
    path.write_text(ca.cert_pem)
    return ca, path


@pytest.fixture(autouse=True)
def _journal_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own run journal: never the user's real one."""
    path = tmp_path / "journal.sqlite"
    monkeypatch.setenv("CERTFLEET_JOURNAL", str(path))
    return path
