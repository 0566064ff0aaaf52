"""Per-device limits of the RoomOS web server: request rate with a bounded queue, login
lockout after repeated failures, and the session caps."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable

Clock = Callable[[], float]


class QueueFull(Exception):
    """The waiting queue is full: the device answers HTTP 503."""


class RateLimiter:
    """Token bucket (rate R/s, burst B) in front of a FIFO waiting queue of `queue` places.

    A request that finds a token and nobody waiting goes straight through; otherwise it
    reserves the next token and waits for it, unless `queue` requests are already
    waiting, in which case `acquire` raises QueueFull. With R=1, B=1, queue=30 and 32
    requests at once: one runs, thirty wait (the last one about 30 s), one gets 503."""

    def __init__(
        self, rate: float, queue: int, *, burst: float | None = None, clock: Clock = time.monotonic
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        if queue < 0:
            raise ValueError("queue must be >= 0")
        self.rate = rate
        self.queue = queue
        self.burst = burst if burst is not None else max(1.0, rate)
        self._clock = clock
        self._tokens = self.burst
        self._stamp = clock()
        self._waiting = 0

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    async def acquire(self) -> None:
        self._refill()
        if self._waiting == 0 and self._tokens >= 1:
            self._tokens -= 1
            return
        if self._waiting >= self.queue:
            raise QueueFull
        self._tokens -= 1  # reserve the next token; negative = tokens owed to waiters
        self._waiting += 1
        try:
            await asyncio.sleep(max(0.0, -self._tokens / self.rate))
        finally:
            self._waiting -= 1


class LoginGuard:
    """Counts failed logins per user; `max_failed` failures lock the user out (even with
    the right password) for `lockout_seconds`."""

    _MAX_TRACKED = 1024  # bound on usernames remembered (clients choose them)

    def __init__(
        self, max_failed: int = 5, lockout_seconds: float = 300.0, *, clock: Clock = time.monotonic
    ) -> None:
        self.max_failed = max_failed
        self.lockout_seconds = lockout_seconds
        self._clock = clock
        self._failures: OrderedDict[str, int] = OrderedDict()
        self._locked_until: dict[str, float] = {}

    def locked(self, user: str) -> bool:
        until = self._locked_until.get(user)
        if until is None:
            return False
        if self._clock() < until:
            return True
        del self._locked_until[user]
        return False

    def failed(self, user: str) -> None:
        count = self._failures.pop(user, 0) + 1
        if count >= self.max_failed:
            self._locked_until[user] = self._clock() + self.lockout_seconds
            return
        self._failures[user] = count
        while len(self._failures) > self._MAX_TRACKED:
            self._failures.popitem(last=False)

    def succeeded(self, user: str) -> None:
        self._failures.pop(user, None)


class SessionLimitError(Exception):
    """Too many sessions: per user or in total."""


class SessionTable:
    """Open xmlapi sessions (`SessionId` cookie → user). Sessions never time out."""

    def __init__(self, max_per_user: int = 20, max_total: int = 30) -> None:
        self.max_per_user = max_per_user
        self.max_total = max_total
        self._sessions: dict[str, str] = {}

    def open(self, user: str) -> str:
        if len(self._sessions) >= self.max_total:
            raise SessionLimitError("Too many sessions")
        if sum(1 for u in self._sessions.values() if u == user) >= self.max_per_user:
            raise SessionLimitError("Too many sessions")
        session_id = secrets.token_hex(20)
        self._sessions[session_id] = user
        return session_id

    def user(self, session_id: str) -> str | None:
        return self._sessions.get(session_id)

    def close(self, session_id: str) -> bool:
        return self._sessions.pop(session_id, None) is not None

    def clear(self) -> None:
        self._sessions.clear()
