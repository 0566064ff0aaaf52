"""``--limit firmware:…`` and ``product:…``: matched against what the journal recorded of each
device, before any device is contacted."""

from __future__ import annotations

from pathlib import Path

import pytest

from certfleet.fleet.errors import SelectionError
from certfleet.fleet.inventory import Inventory, load_inventory
from certfleet.fleet.journal import Journal, KnownFirmware

RECORDED = {
    "room-1": ("9.15.17.4", "Cisco Room Kit", "Room Kit"),
    "room-2": ("10.19.4.2", "Cisco Room Kit", "Room Kit"),
    "room-3": ("11.24.1.5", "Cisco Room Bar", "Room Bar"),
    "room-4": ("11.24.4.1", "Cisco Board Pro", "Board Pro"),
    "room-5": ("11.27.2.0", "Cisco Desk Pro", "Desk Pro"),
    "room-6": ("26.1.1.3", "Cisco Room Bar", "Room Bar"),
    # room-7: never read
}


@pytest.fixture
def inventory(tmp_path: Path) -> Inventory:
    inv = tmp_path / "inv.yaml"
    inv.write_text("defaults: {username: admin, password: 'env:CF_PW', verify: insecure}\n"
                   "devices:\n"
                   + "".join(f"  room-{i}: {{host: 127.0.0.1, port: {8000 + i}}}\n"
                             for i in range(1, 8)))
    return load_inventory(inv)


@pytest.fixture
def known(tmp_path: Path) -> dict[str, KnownFirmware]:
    with Journal.open(tmp_path / "journal.sqlite") as journal:
        for name, (version, product, platform) in RECORDED.items():
            journal.record_firmware("run-1", name, {"version": version, "product": product,
                                                    "platform": platform})
        journal.record_firmware("run-0", "room-6", {"version": "11.24.1.5"})  # older read...
        journal.record_firmware("run-2", "room-6", {"version": "26.1.1.3", "product":
                                                    "Cisco Room Bar", "platform": "Room Bar"})
        return journal.known_firmware()


def names(inventory: Inventory, known: dict[str, KnownFirmware], *limit: str) -> list[str]:
    return [d.name for d in inventory.select(list(limit), known=known)]


@pytest.mark.parametrize(("term", "expected"), [
    ("firmware:11.24", ["room-3", "room-4"]),
    ("firmware:11", ["room-3", "room-4", "room-5"]),
    ("firmware:<11.27", ["room-1", "room-2", "room-3", "room-4"]),
    ("firmware:<=11.24", ["room-1", "room-2", "room-3", "room-4"]),
    ("firmware:>11.24", ["room-5", "room-6"]),
    ("firmware:>=11.27", ["room-5", "room-6"]),
    ("firmware:>=26", ["room-6"]),
    ("firmware:=11.24.1.5", ["room-3"]),
    ("firmware:=11.24", []),
    ("firmware:< 11", ["room-1", "room-2"]),
])
def test_firmware_terms(inventory: Inventory, known: dict[str, KnownFirmware], term: str,
                        expected: list[str]) -> None:
    if not expected:
        with pytest.raises(SelectionError, match="matches no device"):
            names(inventory, known, term)
        return
    assert names(inventory, known, term) == expected


def test_the_newest_read_wins(known: dict[str, KnownFirmware]) -> None:
    assert known["room-6"].version == "26.1.1.3" and known["room-6"].run_id == "run-2"


@pytest.mark.parametrize(("term", "expected"), [
    ("product:Room Bar", ["room-3", "room-6"]),
    ("product:cisco room bar", ["room-3", "room-6"]),
    ("product:davinci", ["room-3", "room-6"]),
    ("product:*Pro", ["room-4", "room-5"]),
    ("product:Room Kit", ["room-1", "room-2"]),
])
def test_product_terms(inventory: Inventory, known: dict[str, KnownFirmware], term: str,
                       expected: list[str]) -> None:
    assert names(inventory, known, term) == expected


def test_terms_combine_and_exclude(inventory: Inventory, known: dict[str, KnownFirmware]) -> None:
    assert names(inventory, known, "product:Room Bar,!firmware:>=26") == ["room-3"]
    assert names(inventory, known, "!firmware:<11") == ["room-3", "room-4", "room-5", "room-6",
                                                        "room-7"]


def test_devices_never_read_match_no_firmware_term_and_it_says_so(
        inventory: Inventory, known: dict[str, KnownFirmware]) -> None:
    assert "room-7" not in names(inventory, known, "firmware:>=1")
    assert any("1 device(s) have no recorded firmware" in w and "certfleet status" in w
               for w in inventory.warnings)


def test_no_record_at_all_is_a_clear_selection_error(inventory: Inventory) -> None:
    with pytest.raises(SelectionError) as info:
        inventory.select(["firmware:<11.27"], known={})
    assert "7 device(s) have no recorded firmware" in str(info.value)
    assert "certfleet status" in str(info.value)


@pytest.mark.parametrize("term", ["firmware:", "firmware:abc", "firmware:<<11", "firmware:11.x",
                                  "product:", "firmwar:11"])
def test_malformed_terms(inventory: Inventory, known: dict[str, KnownFirmware],
                         term: str) -> None:
    with pytest.raises(SelectionError, match=term.split(":")[0]):
        inventory.select([term], known=known)
