"""roomsim's state folder and event loop, below the HTTP layer."""

from __future__ import annotations

import asyncio
import stat
import sys

import pytest

from certfleet.roomsim.loop import new_event_loop
from certfleet.roomsim.state import PRIVATE, StateDir, write_atomic


def test_write_atomic_makes_missing_folders_and_replaces_whole_files(tmp_path):
    path = tmp_path / "devices" / "room-009" / "state.json"
    write_atomic(path, b"first", PRIVATE)
    write_atomic(path, b"second, longer", PRIVATE)
    assert path.read_bytes() == b"second, longer"
    assert stat.S_IMODE(path.stat().st_mode) == PRIVATE
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]  # no temporary left


def test_write_atomic_into_a_file_that_is_not_a_folder_fails(tmp_path):
    (tmp_path / "devices").write_text("a file where a folder should be")
    with pytest.raises(OSError):
        write_atomic(tmp_path / "devices" / "room-001" / "state.json", b"{}")


def test_device_state_round_trips_and_a_folder_removed_meanwhile_is_made_again(tmp_path):
    state = StateDir(tmp_path / "sim")
    data = {"name": "room-001", "port": 4431, "config": {"A/B": "x<y&\u00e9"}, "ca": []}
    state.save_device("room-001", data)
    assert state.load_device("room-001") == {"version": 1, **data}
    for child in state.device_dir("room-001").iterdir():
        child.unlink()
    state.device_dir("room-001").rmdir()
    state.save_device("room-001", {**data, "port": 4432})
    loaded = state.load_device("room-001")
    assert loaded is not None and loaded["port"] == 4432


def test_the_loop_is_uvloops_when_installed():
    uvloop = pytest.importorskip("uvloop")
    loop = new_event_loop()
    try:
        assert isinstance(loop, uvloop.Loop)
        assert loop.run_until_complete(asyncio.sleep(0, "ran")) == "ran"
    finally:
        loop.close()


def test_the_loop_is_asyncios_without_uvloop(monkeypatch):
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    loop = new_event_loop()
    try:
        assert isinstance(loop, asyncio.BaseEventLoop)  # uvloop's Loop is no BaseEventLoop
        assert loop.run_until_complete(asyncio.sleep(0, "ran")) == "ran"
    finally:
        loop.close()
