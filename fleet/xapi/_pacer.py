"""fleet.xapi._pacer — one access token's pace toward the Webex API (about 300 requests a
minute per user, reference webex-cloud-api.md §4.3): a token bucket every device reached with
that token shares, paused by a 429 for the time it asks."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

from ..errors import (
    InputError,
    RateLimitedError,
)
from ..inventory import DEFAULT_API_RATE_PER_MINUTE

__all__ = ["DEFAULT_BURST", "DEFAULT_RATE_PER_MINUTE", "MAX_RETRY_AFTER", "Clock", "RatePacer",
           "Sleep"]

#: requests a minute one token may send: under Webex's ~300/min with room for other clients
DEFAULT_RATE_PER_MINUTE = DEFAULT_API_RATE_PER_MINUTE
#: requests that may go at once after a quiet spell (any 60 s window: at most rate + burst)
DEFAULT_BURST = 10
#: a 429 asking for longer than this fails the devices at once instead of holding the run
MAX_RETRY_AFTER = 300.0

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class RatePacer:
    """A token bucket shared by every request made with one access token.

    ``rate_per_minute`` tokens are added evenly; at most ``burst`` wait in the bucket, so in
    any 60 s at most ``rate_per_minute + burst`` requests leave. Waiters are served in order
    (one sleeps at a time, holding the lock). :meth:`pause` stops everyone until a time —
    after a 429 — and then resumes at the steady rate, with no burst. A pause longer than
    ``max_wait`` makes :meth:`acquire` raise :class:`RateLimitedError` at once: holding a
    whole run for an hour is worse than saying so.
    """

    def __init__(
        self,
        rate_per_minute: float = DEFAULT_RATE_PER_MINUTE,
        burst: int = DEFAULT_BURST,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        max_wait: float = MAX_RETRY_AFTER,
    ) -> None:
        if rate_per_minute <= 0 or burst < 1:
            raise InputError("the Webex API pacer needs a positive rate "
                             "(api_rate_per_minute) and a burst of at least 1")
        self.rate_per_minute = rate_per_minute
        self.burst = burst
        self._per_second = rate_per_minute / 60.0
        self._clock = clock
        self._sleep = sleep
        self._max_wait = max_wait
        self._tokens = float(burst)
        self._stamp = clock()
        self._paused_until = -math.inf
        self._pause_reason = ""
        self._lock = asyncio.Lock()
        #: counters for reports and tests
        self.requests = 0
        self.rate_limited = 0
        self.waited = 0.0

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) *
                               self._per_second)
            self._stamp = now

    async def acquire(self) -> None:
        """Wait for a turn to send one request."""
        async with self._lock:
            while True:
                now = self._clock()
                if now < self._paused_until:
                    remaining = self._paused_until - now
                    if remaining > self._max_wait:
                        raise RateLimitedError(
                            f"Webex rate limit: asked to wait {remaining:.0f}s "
                            f"({self._pause_reason}), more than the {self._max_wait:.0f}s "
                            "certfleet waits; run again later or with another token"
                        )
                    await self._sleep(remaining)
                    self.waited += remaining
                    continue
                self._refill(now)
                if self._tokens >= 1.0 - 1e-9:  # float rounding must not cost a sleep
                    self._tokens = max(self._tokens - 1.0, 0.0)
                    self.requests += 1
                    return
                wait = (1.0 - self._tokens) / self._per_second
                await self._sleep(wait)
                self.waited += wait

    def pause(self, seconds: float, reason: str = "") -> None:
        """A 429 came back: nobody sends for ``seconds``; the bucket starts empty after."""
        self.rate_limited += 1
        until = self._clock() + max(seconds, 0.0)
        if until > self._paused_until:
            self._paused_until = until
            self._pause_reason = reason or "HTTP 429"
        self._tokens = 0.0
        self._stamp = max(self._stamp, self._paused_until)

    def slow_down(self, rate_per_minute: float) -> None:
        """Lower the rate (never raise it): devices sharing a token but asking for
        different rates get the most careful one."""
        if 0 < rate_per_minute < self.rate_per_minute:
            self._refill(self._clock())
            self.rate_per_minute = rate_per_minute
            self._per_second = rate_per_minute / 60.0

    def stats(self) -> dict[str, float]:
        return {"requests": self.requests, "rate_limited": self.rate_limited,
                "waited_s": round(self.waited, 3)}


