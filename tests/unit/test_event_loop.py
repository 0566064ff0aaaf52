"""fleet/_loop.py: the loop a run actually runs on (issue 18). The CLI test in
tests/cli/test_startup_imports.py shows which modules a run imports; these show the loop
the engine's coroutine finds itself on, so a chooser that imported uvloop without using it
would fail here."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from certfleet.fleet import engine
from certfleet.fleet._loop import ENV, run

uvloop = pytest.importorskip("uvloop")


async def _running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


def test_run_is_on_uvloop_where_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    assert isinstance(run(_running_loop()), uvloop.Loop)


def test_run_is_on_asyncios_loop_when_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "asyncio")
    loop = run(_running_loop())
    assert not isinstance(loop, uvloop.Loop)
    assert isinstance(loop, asyncio.BaseEventLoop)


@pytest.mark.parametrize("choice", [None, "asyncio"])
def test_the_front_door_runs_the_plan_on_the_chosen_loop(
        monkeypatch: pytest.MonkeyPatch, choice: str | None) -> None:
    if choice is None:
        monkeypatch.delenv(ENV, raising=False)
    else:
        monkeypatch.setenv(ENV, choice)
    seen: list[asyncio.AbstractEventLoop] = []

    async def fake_run_async(*args: Any, **kwargs: Any) -> Any:
        seen.append(asyncio.get_running_loop())
        return "result"

    monkeypatch.setattr(engine, "run_async", fake_run_async)
    assert engine.run(object(), []) == "result"  # type: ignore[arg-type]
    assert isinstance(seen[0], uvloop.Loop) is (choice is None)
