"""enroll --challenge-command: a one-time challenge is asked for once per device, just before
the device's SCEP Request (a second call would have spent the first one)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

COUNTER = """\
import os, sys
from pathlib import Path
log = Path(sys.argv[1])
with log.open("a") as out:
    out.write(os.environ["CERTFLEET_DEVICE"] + "\\n")
print(os.environ["TEST_SCEP_CHALLENGE"])
"""


def test_challenge_command_runs_once_per_device(
    sim: Any, scep_server: Any, tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_SCEP_CHALLENGE", scep_server.challenge)
    inv = yaml.safe_load(sim.inventory_path.read_text())
    inv["defaults"]["certificate"] = {"key": "rsa-2048", "subject": {"O": "Example"},
                                      "san_dns": ["{name}.rooms.example"]}
    inventory = tmp_path / "enroll.yaml"
    inventory.write_text(yaml.safe_dump(inv))
    script = tmp_path / "challenge.py"
    script.write_text(COUNTER)
    log = tmp_path / "calls.log"
    command = shlex.join([sys.executable, str(script), str(log)])

    result = cli("enroll", "-i", str(inventory), "--scep", scep_server.url,
                 "--ca-fingerprint", scep_server.ca_sha256, "--challenge-command", command,
                 "--purpose", "802.1X", "--renewal-profile", "-o", "json")
    assert result.exit_code == 0, result.output
    assert result.json()["summary"]["changed"] == len(sim.devices)
    calls = log.read_text().split()
    assert sorted(calls) == sorted(sim.devices)  # once each, not once per use
    assert scep_server.challenge not in result.output

    # nothing to do: no challenge is asked for at all
    log.write_text("")
    again = cli("enroll", "-i", str(inventory), "--scep", scep_server.url,
                "--ca-fingerprint", scep_server.ca_sha256, "--challenge-command", command,
                "--purpose", "802.1X", "--renewal-profile", "-o", "json")
    assert again.exit_code == 0, again.output
    assert again.json()["summary"]["ok"] == len(sim.devices)
    assert log.read_text() == ""
