"""fleet.selectors — ``--limit firmware:…`` and ``--limit product:…``.

Devices are selected before any is contacted, so these terms match what certfleet last read
from each device (the journal keeps the release and product of the newest run that read them,
see :meth:`fleet.journal.Journal.known_firmware`). A device never read has nothing recorded and
matches no such term; the caller is told how many and how to fix it (run ``certfleet status``).

``firmware:`` takes a version, optionally after an operator. A version names a series:
``firmware:11.24`` matches 11.24.1.5 and 11.24.4.1 (not 11.240); the comparisons compare the
device's version cut to the precision given, so ``firmware:<11.27`` is "before the 11.27
series" (11.26.1 yes, 11.27.2.0 no) and ``firmware:<=11.24`` includes every 11.24.x.
``firmware:=11.24.1.5`` is that exact version. ``product:`` matches the product as the device
reports it (``Cisco Room Bar``), its platform (``Room Bar``) or the schema's product code
(``davinci``), ignoring case and a leading ``Cisco``; globs (``product:*Board*``) work.
"""

from __future__ import annotations

import fnmatch
import operator
import re
from collections.abc import Callable
from typing import Protocol

from fleet.errors import SelectionError

__all__ = ["Recorded", "firmware_test", "no_record_hint", "product_test", "version_parts"]

_VERSION = re.compile(r"(?:ce|RoomOS\s*)?(\d+(?:\.\d+)*)", re.IGNORECASE)
_TERM = re.compile(r"(<=|>=|<|>|=)?\s*v?(\d+(?:\.\d+)*)")

_COMPARE: dict[str, Callable[[tuple[int, ...], tuple[int, ...]], bool]] = {
    "": operator.eq, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}


class Recorded(Protocol):
    """What the journal recorded of a device (:class:`fleet.journal.KnownFirmware`)."""

    @property
    def version(self) -> str | None: ...

    @property
    def product(self) -> str | None: ...

    @property
    def platform(self) -> str | None: ...


def version_parts(text: str | None) -> tuple[int, ...] | None:
    """``"11.24.1.5"`` (or ``ce11.24.1.5.abc``) → ``(11, 24, 1, 5)``; None if it has none."""
    match = _VERSION.match((text or "").strip())
    return tuple(int(p) for p in match[1].split(".")) if match else None


def firmware_test(value: str, term: str) -> Callable[[Recorded | None], bool]:
    """The test a ``firmware:VALUE`` term applies to a device's record."""
    match = _TERM.fullmatch(value.strip())
    if not match:
        raise SelectionError(
            f"--limit term {term!r}: write a RoomOS version, optionally after <, <=, >, >= or "
            "=, e.g. firmware:11.24, firmware:<11.27, firmware:>=26.1, firmware:=11.24.1.5"
        )
    op, wanted = match[1] or "", tuple(int(p) for p in match[2].split("."))

    def test(record: Recorded | None) -> bool:
        parts = version_parts(record.version if record else None)
        if parts is None:
            return False
        if op == "=":  # exact: the same version, missing parts being 0
            width = max(len(parts), len(wanted))
            return (parts + (0,) * width)[:width] == (wanted + (0,) * width)[:width]
        head = (parts + (0,) * len(wanted))[:len(wanted)]
        return _COMPARE[op](head, wanted)

    return test


def _loose(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower()).removeprefix("cisco ").strip()


def product_test(value: str, term: str) -> Callable[[Recorded | None], bool]:
    """The test a ``product:VALUE`` term applies to a device's record."""
    wanted = _loose(value)
    if not wanted:
        raise SelectionError(f"--limit term {term!r} needs a product, e.g. product:'Room Bar'")

    def test(record: Recorded | None) -> bool:
        if record is None or not (record.product or record.platform):
            return False
        from fleet.xapi.releases import product_code

        names = {_loose(n) for n in (record.product, record.platform) if n}
        code = product_code(record.product or "", record.platform)
        if code:
            names.add(code)
        return any(fnmatch.fnmatchcase(name, wanted) for name in names)

    return test


def no_record_hint(unrecorded: int, what: str) -> str:
    return (f"{unrecorded} device(s) have no recorded {what} (certfleet has not read them "
            "yet) and match no " + what + ": term; run `certfleet status` on them first to "
            "record it")

