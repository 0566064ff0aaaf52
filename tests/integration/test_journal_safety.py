"""The run journal against mistakes: a mistyped passphrase, a second way to the same file,
a signed certificate the device check refuses, a journal file anyone can read."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from test_rotate import JOURNAL_PASS, trusting_inventory

from fleet.pki.keys import load_key_pem
from fleet.secrets import Secret


def requests_seen(sim: Any) -> int:
    return sum(device.requests_seen for device in sim.devices.values())


def files_signer_args(inv: Path, tmp_path: Path) -> list[str]:
    return ["rotate", "-i", str(inv), "--purpose", "HTTPS", "--signer", "files",
            "--outbox", str(tmp_path / "outbox"), "--inbox", str(tmp_path / "inbox"),
            "--force", "-o", "json"]


def journal_keys(journal: Path) -> list[tuple[int, str, str, bytes]]:
    with sqlite3.connect(journal) as db:
        return [(i, d, s, bytes(b)) for i, d, s, b in
                db.execute("SELECT id, device, state, key_pem_encrypted FROM keys ORDER BY id")]


def test_mistyped_journal_passphrase_is_refused_before_any_device(
    sim: Any, lab: Path, tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    inv = trusting_inventory(sim, lab, tmp_path)
    first = cli(*files_signer_args(inv, tmp_path))  # keys made, CSRs out, waiting for a CA
    assert first.exit_code == 0, first.output
    assert first.json()["summary"]["skipped"] == len(sim.devices)
    journal = Path(os.environ["CERTFLEET_JOURNAL"])
    keys_before = journal_keys(journal)
    assert len(keys_before) == len(sim.devices)

    monkeypatch.setenv("CERTFLEET_JOURNAL_PASSPHRASE", JOURNAL_PASS + "x")  # a typo
    seen = requests_seen(sim)
    resumed = cli("runs", "resume", "last", "-o", "json")
    assert resumed.exit_code == 2, resumed.output
    message = " ".join(resumed.stderr.split())
    assert "passphrase" in message and "does not decrypt" in message
    assert requests_seen(sim) == seen

    # a new rotation with the typo, on a journal that holds keys: refused too (it would leave
    # the journal's keys under two passphrases)
    rotated = cli("rotate", "-i", str(inv), "--purpose", "HTTPS", "--signer", "local-ca",
                  "--ca-dir", str(lab), "--force", "-o", "json")
    assert rotated.exit_code == 2, rotated.output
    assert "does not decrypt" in " ".join(rotated.stderr.split())
    assert requests_seen(sim) == seen
    assert JOURNAL_PASS not in resumed.output + rotated.output

    assert journal_keys(journal) == keys_before  # nothing new, every key still under one
    for key_id, _device, _state, blob in keys_before:
        load_key_pem(blob, Secret(JOURNAL_PASS), source=f"key {key_id}")
