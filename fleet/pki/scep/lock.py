"""fleet.pki.scep.lock — enrollments to one SCEP server, one at a time within the process."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import AsyncIterator
from typing import Final

import httpx

_LOCK_GUARD: Final = threading.Lock()
#: one per server origin, process-wide: what actually serialises, across threads and loops
_SERVER_LOCKS: dict[str, threading.Lock] = {}
#: one per (event loop, server origin): a fair FIFO queue in front of the threading lock, so
#: that within one loop waiting costs nothing (only the head of the queue tries the lock)
_LOOP_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def _origin(url: httpx.URL) -> str:
    port = url.port or {"http": 80, "https": 443}.get(url.scheme, 0)
    return f"{url.scheme}://{url.host}:{port}"


@contextlib.asynccontextmanager
async def _serialised(origin: str) -> AsyncIterator[None]:
    """Hold the process-wide lock of one SCEP server (by origin) for one PKIOperation.

    Why: scepserver 2.1.0 (Debian bookworm's ``scep``) writes its serial file and index.txt
    without a lock, so simultaneous enrollments get duplicate serial numbers and lose index
    lines (runbook §7, pitfall P11). Keyed by origin, not by full URL, since two paths on one
    host are one depot. It spans threads and event loops (certfleet and a roomsim fleet thread
    enrolling against one server in one test process): an ``asyncio.Lock`` per loop queues the
    tasks of that loop, and the head of each queue takes a ``threading.Lock`` without ever
    blocking the loop (non-blocking attempts with a short back-off; cancellation leaves nothing
    held). Processes are not covered: two certfleet runs against one 2.1.0 server can still
    collide.
    """
    loop = asyncio.get_running_loop()
    with _LOCK_GUARD:
        server_lock = _SERVER_LOCKS.setdefault(origin, threading.Lock())
        loop_lock = _LOOP_LOCKS.setdefault(loop, {}).setdefault(origin, asyncio.Lock())
    async with loop_lock:
        delay = 0.0005
        while not server_lock.acquire(blocking=False):
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.01)
        try:
            yield
        finally:
            server_lock.release()
