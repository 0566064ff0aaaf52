"""roomsim's event loop, below the HTTP layer."""

from __future__ import annotations

import asyncio
import sys

import pytest

from certfleet.roomsim.loop import new_event_loop


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
