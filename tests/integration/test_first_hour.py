"""The first hour with certfleet: defaults that work and say what they did (issue 17 part 5).
A device rotate leaves alone says why, in the table and in JSON."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

CA_PASS = "ca-passphrase-for-first-hour-66"
JOURNAL_PASS = "journal-passphrase-for-first-hour-91"


def test_rotate_says_why_a_device_is_not_due(sim: Any, lab: Path, cli: Any) -> None:
    inv = str(sim.inventory_path)
    args = ("rotate", "-i", inv, "--purpose", "HTTPS", "--signer", "local-ca",
            "--ca-dir", str(lab), "--renew-before", "30d")
    doc = cli(*args, "-o", "json")
    assert doc.exit_code == 0, doc.output
    entries = doc.json()["devices"]
    assert {e["outcome"] for e in entries} == {"ok"}
    for entry in entries:
        match = re.fullmatch(r"not due: (\d+) days left, renew-before 30d", entry["message"])
        assert match, entry
        served = [s.cert for s in sim.devices[entry["device"]].services if "HTTPS" in s.purposes]
        left = (served[0].not_valid_after_utc - dt.datetime.now(dt.UTC)).days
        assert abs(int(match[1]) - left) <= 1, (match[1], left)
    table = cli(*args)
    assert table.exit_code == 0, table.output
    assert table.stdout.count("not due:") == len(sim.devices), table.stdout
    assert "renew-before 30d" in table.stdout
