"""fleet.durations — compact durations such as ``30d``, ``12h`` or ``1d12h``.

``parse_duration`` reads what users type (``--renew-before 30d``, ``--expiring-within 2w``);
``format_duration`` writes the compact form back (``1d12h``, ``0s``). Units: ``w`` weeks,
``d`` days, ``h`` hours, ``m`` minutes, ``s`` seconds, case-insensitive, any order, each at most
once, whitespace between parts allowed. A bare number is refused (``30`` could be minutes or
days); so are negative durations, fractions and values beyond ``datetime.timedelta``'s range.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Final

from .errors import InputError

__all__ = ["UNITS", "format_duration", "parse_duration"]

#: unit letter -> seconds, largest first
UNITS: Final[dict[str, int]] = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}

_UNIT_HELP: Final = "w (weeks), d (days), h (hours), m (minutes) or s (seconds), e.g. 30d or 1d12h"
_PART: Final = re.compile(r"\s*([0-9]+)\s*([A-Za-z]*)\s*")
_MAX_SECONDS: Final = timedelta.max.days * 86_400 + timedelta.max.seconds
#: more digits than this cannot be a valid duration in any unit (avoids huge int conversions)
_MAX_DIGITS: Final = 18


def parse_duration(text: str) -> timedelta:
    """Parse ``30d``, ``12h``, ``90m``, ``45s``, ``2w`` and combinations such as ``1d 12h``.

    Raises :class:`InputError` (quoting the text) for anything else.
    """
    stripped = text.strip()
    if not stripped:
        raise InputError(f"empty duration {text!r}: give a number with a unit, {_UNIT_HELP}")
    if stripped.startswith("-"):
        raise InputError(f"negative duration {text!r}: durations cannot be negative")
    total = 0
    seen: set[str] = set()
    pos = 0
    while pos < len(stripped):
        match = _PART.match(stripped, pos)
        if match is None:
            rest = stripped[pos:]
            if rest[:1] in {".", ","}:
                raise InputError(
                    f"invalid duration {text!r}: fractions are not supported; "
                    "combine whole units instead, e.g. 1d12h rather than 1.5d"
                )
            raise InputError(
                f"invalid duration {text!r}: expected a number and a unit, {_UNIT_HELP}"
            )
        digits, unit_text = match.group(1), match.group(2)
        if not unit_text:
            nxt = stripped[match.end() : match.end() + 1]
            if nxt in {".", ","}:
                raise InputError(
                    f"invalid duration {text!r}: fractions are not supported; "
                    "combine whole units instead, e.g. 1d12h rather than 1.5d"
                )
            raise InputError(
                f"invalid duration {text!r}: the number {digits} has no unit; "
                f"units are {_UNIT_HELP}"
            )
        unit = unit_text.lower()
        if unit not in UNITS:
            raise InputError(
                f"invalid duration {text!r}: unknown unit {unit_text!r}; units are {_UNIT_HELP}"
            )
        if unit in seen:
            raise InputError(f"invalid duration {text!r}: the unit {unit!r} is given twice")
        seen.add(unit)
        if len(digits.lstrip("0")) > _MAX_DIGITS:
            raise InputError(f"duration {text!r} is too large")
        total += int(digits) * UNITS[unit]
        pos = match.end()
    if total > _MAX_SECONDS:
        raise InputError(f"duration {text!r} is too large (the maximum is {timedelta.max.days}d)")
    return timedelta(seconds=total)


def format_duration(td: timedelta) -> str:
    """The compact form of ``td``: ``1d12h``, ``45m``, ``0s``.

    Days are the largest unit (``14d``, not ``2w``: expiries read naturally in days). Fractions
    of a second are dropped (towards zero). A negative duration gets a leading ``-`` (useful for
    "expired 3d ago"); :func:`parse_duration` does not accept that form.
    """
    micro = (td.days * 86_400 + td.seconds) * 1_000_000 + td.microseconds
    sign = "-" if micro < 0 else ""
    seconds = abs(micro) // 1_000_000
    if seconds == 0:
        return "0s"
    parts: list[str] = []
    for unit in ("d", "h", "m", "s"):
        count, seconds = divmod(seconds, UNITS[unit])
        if count:
            parts.append(f"{count}{unit}")
    return sign + "".join(parts)
