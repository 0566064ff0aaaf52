"""fleet.windows — maintenance windows: ``--window "Sat 01:00-05:00 Europe/Oslo"``.

A window is days, a clock-time range and a time zone. Days: ``Mon``..``Sun``, ranges
(``Mon-Fri``), lists (``Sat,Sun``), or ``daily``. The range may cross midnight (``23:00-02:00``
belongs to the day it starts on). Each device is judged on its own clock: its inventory
``timezone`` if it has one, else the window's zone (UTC when none is written). A device is only
changed while one of the windows is open for it; the others are skipped, saying when the next
window opens. Windows are checked when written: unknown days or zones, bad times and empty
ranges are input errors.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import InputError

__all__ = ["Window", "next_opening", "open_now", "parse_window"]

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Window:
    days: frozenset[int]  # 0 = Monday
    start: dt.time
    end: dt.time
    zone: str | None
    text: str

    def _zone(self, device_zone: str | None) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(device_zone or self.zone or "UTC")

    def contains(self, when: dt.datetime, device_zone: str | None = None) -> bool:
        local = when.astimezone(self._zone(device_zone))
        t = local.time().replace(tzinfo=None)
        if self.start < self.end:
            return local.weekday() in self.days and self.start <= t < self.end
        # crosses midnight: open from start on a listed day until end the next day
        if t >= self.start:
            return local.weekday() in self.days
        return t < self.end and (local.weekday() - 1) % 7 in self.days


def _days(text: str, window: str) -> frozenset[int]:
    if text.lower() in ("daily", "*", "every"):
        return frozenset(range(7))
    days: set[int] = set()
    for part in text.lower().split(","):
        first, _, last = part.partition("-")
        try:
            a = _DAYS.index(first[:3]) if len(first) >= 3 else -1
            b = _DAYS.index(last[:3]) if last else a
        except ValueError:
            a = b = -1
        if a < 0 or b < 0:
            raise InputError(
                f"--window {window!r}: unknown day {part!r} (Mon..Sun, Mon-Fri, daily)"
            )
        day = a
        while True:
            days.add(day)
            if day == b:
                break
            day = (day + 1) % 7
    return frozenset(days)


def parse_window(text: str) -> Window:
    parts = text.split()
    match = None
    if len(parts) in (2, 3):
        match = re.fullmatch(r"(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})", parts[1])
    if not match:
        raise InputError(f"--window {text!r}: write DAYS HH:MM-HH:MM [ZONE], "
                         "e.g. 'Sat 01:00-05:00 Europe/Oslo'")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    until_midnight = (h2, m2) == (24, 0)
    if until_midnight:
        h2 = 0
    if not (0 <= h1 < 24 and 0 <= h2 < 24 and 0 <= m1 < 60 and 0 <= m2 < 60):
        raise InputError(f"--window {text!r}: {parts[1]} is not a valid time range")
    start = dt.time(h1, m1)
    end = dt.time.max if until_midnight else dt.time(h2, m2)
    if start == end:
        raise InputError(f"--window {text!r}: the window is empty ({parts[1]})")
    zone = parts[2] if len(parts) == 3 else None
    if zone:
        try:
            zoneinfo.ZoneInfo(zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise InputError(f"--window {text!r}: unknown time zone {zone!r}") from None
    return Window(_days(parts[0], text), start, end, zone, text)


def open_now(windows: Sequence[Window], when: dt.datetime, device_zone: str | None) -> bool:
    return not windows or any(w.contains(when, device_zone) for w in windows)


def next_opening(windows: Sequence[Window], when: dt.datetime,
                 device_zone: str | None) -> dt.datetime | None:
    """The next minute at which a window opens for this device (within two weeks)."""
    probe = when.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    for _ in range(14 * 24 * 60):
        if open_now(windows, probe, device_zone):
            return probe
        probe += dt.timedelta(minutes=1)
    return None
