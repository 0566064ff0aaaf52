"""The run journal against mistakes: a mistyped passphrase, a second way to the same file,
a signed certificate the device check refuses, a journal file anyone can read."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from test_rotate import JOURNAL_PASS, trusting_inventory

from certfleet.fleet.pki.keys import load_key_pem
from certfleet.fleet.secrets import Secret


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


# --------------------------------------------------------- a signed certificate that is unfit


def sim_inventory(sim: Any, lab: Path, tmp_path: Path, certificate: dict[str, Any] | None) -> Path:
    import yaml

    both = tmp_path / "device-cas.pem"
    both.write_text(sim.ca_pem_path.read_text() + (lab / "ca.pem").read_text())
    inv = yaml.safe_load(sim.inventory_path.read_text())
    inv["defaults"]["verify"] = f"ca:{both}"
    if certificate is not None:
        inv["defaults"]["certificate"] = certificate
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(inv))
    return path


def test_unfit_signed_certificate_is_abandoned_and_a_new_key_made_next_time(
    sim: Any, lab: Path, tmp_path: Path, cli: Any
) -> None:
    journal = Path(os.environ["CERTFLEET_JOURNAL"])
    rotate = ["rotate", "--purpose", "HTTPS", "--signer", "local-ca", "--ca-dir", str(lab),
              "--force", "-o", "json"]
    # a template that names no SAN: the signed certificate is unfit for HTTPS
    unfit = sim_inventory(sim, lab, tmp_path, {"san_dns": []})
    first = cli("-i", str(unfit), *rotate)
    assert first.exit_code == 1
    assert all(d["error"]["kind"] == "certificate-check" for d in first.json()["devices"])
    assert {state for _i, _d, state, _b in journal_keys(journal)} == {"abandoned"}

    # the template fixed (back to the default, which names the host): new keys, and it works
    fixed = sim_inventory(sim, lab, tmp_path, None)
    second = cli("-i", str(fixed), *rotate)
    assert second.exit_code == 0, second.output
    assert second.json()["summary"]["changed"] == len(sim.devices)
    keys = journal_keys(journal)
    assert len(keys) == 2 * len(sim.devices)
    assert sorted(state for _i, _d, state, _b in keys) == \
        ["abandoned"] * len(sim.devices) + ["done"] * len(sim.devices)

    # runs keys shows nothing open; --all shows the abandoned ones and why
    listed = cli("runs", "keys", "-o", "json")
    assert listed.exit_code == 0, listed.output
    assert listed.json()["keys"] == []
    every = cli("runs", "keys", "--all", "-o", "json")
    states = sorted(k["state"] for k in every.json()["keys"])
    assert states == ["abandoned"] * len(sim.devices) + ["done"] * len(sim.devices)


def test_runs_keys_lists_open_keys_and_drop_key_abandons_one(
    sim: Any, lab: Path, tmp_path: Path, cli: Any
) -> None:
    inv = trusting_inventory(sim, lab, tmp_path)
    first = cli(*files_signer_args(inv, tmp_path))
    assert first.exit_code == 0, first.output
    listed = cli("runs", "keys", "-o", "json")
    assert listed.exit_code == 0, listed.output
    keys = listed.json()["keys"]
    assert sorted(k["device"] for k in keys) == sorted(sim.devices)
    assert {k["state"] for k in keys} == {"submitted"}
    assert all(k["run_id"] == first.json()["run_id"] for k in keys)
    table = cli("runs", "keys")
    assert table.exit_code == 0 and all(name in table.stdout for name in sim.devices)
    assert "PRIVATE KEY" not in listed.output + table.output

    victim = keys[0]
    dropped = cli("runs", "drop-key", str(victim["id"]), "--yes")
    assert dropped.exit_code == 0, dropped.output
    after = cli("runs", "keys", "-o", "json").json()["keys"]
    assert victim["id"] not in {k["id"] for k in after}
    assert len(after) == len(keys) - 1
    # a key that is not open (or not there) cannot be dropped
    again = cli("runs", "drop-key", str(victim["id"]), "--yes")
    assert again.exit_code == 2 and "abandoned" in again.stderr
    missing = cli("runs", "drop-key", "99999", "--yes")
    assert missing.exit_code == 2 and "99999" in missing.stderr

    # the dropped device gets a new key next time; the others keep theirs
    (tmp_path / "inbox").mkdir()
    second = cli(*files_signer_args(inv, tmp_path))
    assert second.exit_code == 0, second.output
    journal = Path(os.environ["CERTFLEET_JOURNAL"])
    per_device: dict[str, int] = {}
    for _i, device, _s, _b in journal_keys(journal):
        per_device[device] = per_device.get(device, 0) + 1
    assert per_device[victim["device"]] == 2
    assert all(n == 1 for d, n in per_device.items() if d != victim["device"])
