"""fleet._loop — the event loop a run gets: uvloop's where it is installed, asyncio's otherwise.

A fleet run is thousands of short TLS exchanges, and on that path the loop and its TLS
transport are most of the client's CPU: uvloop runs both in C, asyncio's own in Python (TLS
records through ``asyncio.sslproto``). The benchmark measures the difference
(``bench/fleet_bench.py``, rows ``status`` and ``push-ca``). ``CERTFLEET_EVENT_LOOP=asyncio``
chooses asyncio's loop whatever is installed (e.g. to rule the loop out when chasing a bug).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["ENV", "loop_factory", "run"]

T = TypeVar("T")

#: the environment variable that chooses the loop: ``uvloop`` (the default where it is
#: installed) or ``asyncio``
ENV = "CERTFLEET_EVENT_LOOP"


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's ``new_event_loop`` when it is installed and not ruled out by ``ENV``; None
    (asyncio's default) otherwise."""
    if os.environ.get(ENV, "").strip().lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:  # not installed (Windows, PyPy, a minimal install): asyncio's loop
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coro)`` on the loop :func:`loop_factory` chooses."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(coro)
