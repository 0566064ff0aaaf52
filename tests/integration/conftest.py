"""Fixtures for the integration tests: a lab CA made with `certfleet ca init` (the real SCEP
server, `scep_server`, comes from tests/scep_fixture.py through tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def lab(tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch,
        request: pytest.FixtureRequest) -> Path:
    """A local CA (`certfleet ca init`), with the passphrases in the environment: the test
    module's CA_PASS and JOURNAL_PASS where it has them (it checks they never leak)."""
    monkeypatch.setenv("CERTFLEET_CA_PASSPHRASE",
                       getattr(request.module, "CA_PASS", "lab-ca-passphrase-3107"))
    monkeypatch.setenv("CERTFLEET_JOURNAL_PASSPHRASE",
                       getattr(request.module, "JOURNAL_PASS", "lab-journal-passphrase-6650"))
    ca_dir = tmp_path / "lab-ca"
    result = cli("ca", "init", "--dir", str(ca_dir), "--cn", "Lab Room CA",
                 "--passphrase", "env:CERTFLEET_CA_PASSPHRASE")
    assert result.exit_code == 0, result.output
    return ca_dir
