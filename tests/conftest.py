"""Shared fixtures: a simulated fleet on loopback, test CAs made in memory, the CLI runner."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from scep_fixture import scep_server, scep_servers  # noqa: F401  (fixtures for every test)
from typer.testing import CliRunner

from cli.main import app
from fleet.pki.local_ca import LocalCa, create_ca


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
    from roomsim import SimFleetThread

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
