"""fleet.xapi._config — what every transport shares about talking to a device or an API:
timeouts, the retry policy and its backoff, ``Retry-After``, TLS contexts, the user agent and
how a host goes into a URL. One home each, so the local, WebSocket and cloud transports cannot
drift apart."""

from __future__ import annotations

import asyncio
import email.utils
import functools
import ipaddress
import os
import random
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import metadata

from ..inventory import Verify

__all__ = [
    "USER_AGENT",
    "Backoff",
    "RetryPolicy",
    "Timeouts",
    "bracket_host",
    "is_ip_literal",
    "retry_after_seconds",
    "ssl_context_for",
]


def _version() -> str:
    try:
        return metadata.version("certfleet")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


#: the one User-Agent certfleet sends, to devices and to the Webex API alike
USER_AGENT = f"certfleet/{_version()}"


@dataclass(frozen=True)
class Timeouts:
    """Per-request timeouts in seconds (the per-device budget is the runner's)."""

    connect: float = 10.0
    read: float = 60.0  # RoomOS queues requests: a full queue of 30 at 1/s is 30 s
    write: float = 10.0
    pool: float = 60.0


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff with full jitter: sleep uniform(0, min(cap, base * 2**attempt)). A
    ``Retry-After`` the answer carried lengthens the wait, up to four times ``cap``."""

    attempts: int = 4
    base: float = 0.5
    cap: float = 8.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.cap, self.base * (2**attempt)))

    def wait(self, attempt: int, retry_after: str | None = None,
             *, now: Callable[[], float] = time.time) -> float:
        """The wait before attempt ``attempt + 1``: the jittered delay, or what
        ``retry_after`` asks for when that is longer (never over ``4 * cap``)."""
        delay = self.delay(attempt)
        asked = retry_after_seconds(retry_after, now=now())
        if asked is not None:
            delay = max(delay, min(asked, self.cap * 4))
        return delay


Sleep = Callable[[float], Awaitable[None]]


class Backoff:
    """The attempts of one request under a :class:`RetryPolicy`: the one retry loop's counter
    and sleep, shared by every transport.

        backoff = Backoff(policy)
        while True:
            ...
            if retryable and backoff.more:
                await backoff.pause(retry_after)
                continue
    """

    def __init__(self, policy: RetryPolicy, *, sleep: Sleep | None = None) -> None:
        self.policy = policy
        self.attempt = 0
        self._sleep = sleep

    @property
    def more(self) -> bool:
        """Whether the policy allows another attempt."""
        return self.attempt + 1 < self.policy.attempts

    async def pause(self, retry_after: str | None = None, *, at_least: float = 0.0) -> None:
        """Sleep before the next attempt (jittered, or as ``Retry-After`` asks) and count it."""
        delay = max(self.policy.wait(self.attempt, retry_after), at_least)
        self.attempt += 1
        await (self._sleep or asyncio.sleep)(delay)


_SECONDS = re.compile(r"\d+(\.\d+)?")


def retry_after_seconds(value: str | None, *, now: float) -> float | None:
    """The seconds a ``Retry-After`` value asks for (RFC 9110 §10.2.3): delta-seconds (a
    decimal is tolerated) or an HTTP-date (``now``: the wall clock, epoch seconds). None when
    it is missing or unreadable (``rand(30),add(30)`` has been seen); a date in the past is 0."""
    text = (value or "").strip()
    if not text:
        return None
    if _SECONDS.fullmatch(text):
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(when.timestamp() - now, 0.0)


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def bracket_host(host: str) -> str:
    """A host as it goes into a URL or a ``host:port``: IPv6 literals in brackets."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


def ssl_context_for(verify: Verify) -> ssl.SSLContext:
    """The TLS context for a device's ``verify:`` setting (pins are checked separately, so
    every pinned or insecure device shares one context). Built once per setting and CA file
    version — building one reads the CA file, per device it would cost a fleet dearly — and
    a CA file that changes while the process runs (a long-running service, a demo that adds
    a CA) gives a new context, not a stale one."""
    if verify.mode == "ca" and verify.ca_path is not None:
        path = str(verify.ca_path)
        try:
            info = os.stat(path)
        except OSError:
            return _context("ca", path, None)  # create_default_context says what is wrong
        return _context("ca", path, (info.st_mtime_ns, info.st_size, info.st_ino))
    if verify.mode == "system":
        return _context("system", None, None)
    return _context("unverified", None, None)


@functools.lru_cache(maxsize=64)
def _context(mode: str, cafile: str | None, stamp: tuple[int, int, int] | None) -> ssl.SSLContext:
    del stamp  # part of the cache key only
    if mode == "ca":
        ctx = ssl.create_default_context(cafile=cafile)
    elif mode == "system":
        ctx = ssl.create_default_context()
    else:  # pin (checked right after the handshake, before any HTTP) or insecure (spelled out)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx
