"""`--limit firmware:` / `product:` on the command line: matched against the journal, before
any device is contacted (these devices do not exist), with a count and a fix on stderr for
devices certfleet has not read yet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from certfleet.fleet.journal import Journal

INVENTORY = """\
defaults: {username: admin, password: 'env:CF_NO_SUCH_PW', verify: insecure}
devices:
  room-1: {host: 127.0.0.1, port: 9}
  room-2: {host: 127.0.0.1, port: 9}
  room-3: {host: 127.0.0.1, port: 9}
"""


def setup(tmp_path: Path, journal: Path) -> str:
    inv = tmp_path / "inv.yaml"
    inv.write_text(INVENTORY)
    with Journal.open(journal) as db:
        db.record_firmware("run-1", "room-1", {"version": "11.24.1.5", "product":
                                               "Cisco Room Bar", "platform": "Room Bar"})
        db.record_firmware("run-1", "room-2", {"version": "26.1.1.3", "product":
                                               "Cisco Board Pro", "platform": "Board Pro"})
    return str(inv)


def test_inventory_list_selects_by_recorded_release(tmp_path: Path, cli: Any,
                                                    _journal_in_tmp: Path) -> None:
    inv = setup(tmp_path, _journal_in_tmp)
    result = cli("inventory", "list", "-i", inv, "--limit", "firmware:<11.27", "-o", "json")
    assert result.exit_code == 0, result.output
    devices = result.json()["devices"]
    assert [d["name"] for d in devices] == ["room-1"]
    assert devices[0]["firmware"]["version"] == "11.24.1.5"
    assert devices[0]["firmware"]["product"] == "Cisco Room Bar"
    assert "1 device(s) have no recorded firmware" in result.stderr
    assert "certfleet status" in result.stderr

    table = cli("inventory", "list", "-i", inv, "--limit", "product:board pro")
    assert table.exit_code == 0 and "room-2" in table.stdout and "26.1.1.3" in table.stdout
    assert "room-1" not in table.stdout

    checked = cli("inventory", "check", "-i", inv, "--no-secrets", "--limit", "firmware:11.24")
    assert checked.exit_code == 0 and "1 selected" in checked.stdout


def test_a_selector_nothing_recorded_matches_exits_2_before_contact(
        tmp_path: Path, cli: Any, _journal_in_tmp: Path) -> None:
    inv = setup(tmp_path, _journal_in_tmp)
    result = cli("status", "-i", inv, "--limit", "firmware:<10")
    assert result.exit_code == 2
    assert "matches no device" in result.stderr and "certfleet status" in result.stderr
    bad = cli("status", "-i", inv, "--limit", "firmware:eleven")
    assert bad.exit_code == 2 and "firmware:<11.27" in bad.stderr
