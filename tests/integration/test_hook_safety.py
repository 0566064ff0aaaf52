"""Hooks (issue 14 item 15): a hook gets a scrubbed environment — no variable a secret
reference of the run names, none carrying a resolved secret, no passphrase/token-like
variable — but PATH, HOME, LANG and certfleet's CERTFLEET_* metadata; and what it prints is
masked when certfleet quotes it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from certfleet.fleet.pki.local_ca import LocalCa

HOOK = """
import json, os, sys
with open(sys.argv[1], "a") as log:
    log.write(json.dumps(dict(os.environ)) + "\\n")
if os.environ["CERTFLEET_OUTCOME"] == "changed":
    print("the password is", open(sys.argv[2]).read().strip(), file=sys.stderr)
    sys.exit(4)
"""


def test_hooks_get_no_secret_and_their_output_is_masked(
    sim: Any, corp_ca: tuple[LocalCa, Path], cli: Any, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_TEST_DEVICE_PASSWORD", sim.password)
    monkeypatch.setenv("CERTFLEET_JOURNAL_PASSPHRASE", "journal-passphrase-hook-8812")
    monkeypatch.setenv("CERTFLEET_CA_PASSPHRASE", "ca-passphrase-hook-3310")
    monkeypatch.setenv("SOME_API_TOKEN", "api-token-hook-5521")
    monkeypatch.setenv("HOOK_TEST_PLAIN", "kept as it is")
    monkeypatch.setenv("HOOK_TEST_NAMED_ON_THE_COMMAND_LINE", "named-but-unused-7731")
    monkeypatch.setattr("sys.argv", ["certfleet", "push-ca", "--challenge",
                                     "env:HOOK_TEST_NAMED_ON_THE_COMMAND_LINE"])
    monkeypatch.setenv("LANG", "C.UTF-8")
    inv = yaml.safe_load(sim.inventory_path.read_text())
    inv["defaults"]["password"] = "env:HOOK_TEST_DEVICE_PASSWORD"
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(yaml.safe_dump(inv))
    script, log = tmp_path / "hook.py", tmp_path / "hook.log"
    script.write_text(HOOK)
    name = next(iter(sim.devices))
    result = cli("--on-changed", f"{sys.executable} {script} {log} {sim.fleet.password_path}",
                 "push-ca", str(corp_ca[1]), "-i", str(inventory), "--limit", name,
                 "-o", "json")
    assert result.exit_code == 1, result.output
    env = json.loads(log.read_text().splitlines()[0])
    for dropped in ("HOOK_TEST_DEVICE_PASSWORD", "CERTFLEET_JOURNAL_PASSPHRASE",
                    "CERTFLEET_CA_PASSPHRASE", "SOME_API_TOKEN",
                    "HOOK_TEST_NAMED_ON_THE_COMMAND_LINE"):
        assert dropped not in env
    assert sim.password not in json.dumps(env)
    assert env["HOOK_TEST_PLAIN"] == "kept as it is"
    assert env["LANG"] == "C.UTF-8" and "PATH" in env and "HOME" in env
    assert env["CERTFLEET_DEVICE"] == name and env["CERTFLEET_OUTCOME"] == "changed"
    device = result.json()["devices"][0]
    assert device["error"]["kind"] == "hook"
    assert "the password is ********" in device["error"]["message"]
    assert sim.password not in result.output
