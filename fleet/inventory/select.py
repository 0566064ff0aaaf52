"""fleet.inventory.select — the ``--limit`` language: which devices of an inventory a run takes.

Each ``--limit`` value may hold several comma-separated terms: a device name, a glob
(``room-0*``, case-sensitive), ``tag:x``, ``group:y``, ``@set`` (a set of device names the caller
passes, e.g. ``@failed``: the devices that failed in the last run), ``firmware:…`` or
``product:…``, any of them prefixed with ``!`` to exclude. The result is the union of the
positive terms (all devices when there are none) minus the union of the excluded ones, in
inventory order. A malformed term, a term that matches no device, and an empty result are
:class:`~fleet.errors.SelectionError`.

``firmware:`` and ``product:`` match what certfleet last read from each device: devices are
selected before any is contacted, so the journal keeps the release and product of the newest run
that read them (see :meth:`fleet.journal.Journal.known_firmware`). A device never read has
nothing recorded and matches no such term; the caller is told how many and how to fix it (run
``certfleet status``).

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
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Final, Protocol

from ..errors import SelectionError
from .checks import _did_you_mean, _listing

if TYPE_CHECKING:
    from .model import Device, Inventory

__all__ = [
    "Recorded",
    "firmware_test",
    "no_record_hint",
    "product_test",
    "select_devices",
    "version_parts",
]

_GLOB_CHARS: Final = frozenset("*?[")

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
        from ..xapi.releases import product_code

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



def select_devices(
    inventory: Inventory,
    limits: Sequence[str] | None = None,
    *,
    named_sets: Mapping[str, Collection[str]] | None = None,
    known: Mapping[str, Recorded] | None = None,
) -> list[Device]:
    """The devices of ``inventory`` the ``--limit`` terms select, in inventory order.

    ``named_sets`` holds the members of each ``@set``; ``known`` what was last read from each
    device (for ``firmware:`` and ``product:``). A hint about devices with nothing recorded is
    added to ``inventory.warnings`` (once).
    """
    if isinstance(limits, str):  # one --limit given as a plain string
        limits = [limits]
    terms: list[str] = []
    for chunk in limits or ():
        for piece in chunk.split(","):
            term = piece.strip()
            if not term:
                raise SelectionError(
                    f"--limit {chunk!r} has an empty term "
                    "(look for a doubled or trailing comma)"
                )
            terms.append(term)
    include: set[str] = set()
    exclude: set[str] = set()
    any_positive = False
    for term in terms:
        negate = term.startswith("!")
        body = term[1:].strip() if negate else term
        if not body or body.startswith("!"):
            raise SelectionError(
                f"--limit term {term!r} is malformed: write !NAME, !GLOB, !tag:X, !group:Y "
                "or !@SET to exclude devices"
            )
        matched = _match(inventory, body, term, named_sets, known)
        if negate:
            exclude |= matched
        else:
            include |= matched
            any_positive = True
    chosen: Collection[str] = include if any_positive else inventory.devices.keys()
    result = [d for n, d in inventory.devices.items() if n in chosen and n not in exclude]
    if not result:
        spec = " ".join(limits) if limits else "(none)"
        why = " (everything it matches is excluded)" if exclude else ""
        raise SelectionError(f"--limit {spec} selects no device{why}")
    return result


def _match(
    inventory: Inventory, body: str, term: str,
    named_sets: Mapping[str, Collection[str]] | None,
    known: Mapping[str, Recorded] | None = None,
) -> set[str]:
    if body.startswith("@"):
        return _match_set(inventory, body[1:], term, named_sets)
    prefix, colon, value = body.partition(":")
    if colon:
        if prefix not in ("tag", "group", "firmware", "product"):
            raise SelectionError(
                f"--limit term {term!r}: unknown prefix '{prefix}:'; use a device name or "
                "glob, tag:X, group:Y, firmware:VERSION, product:NAME or @SET, each "
                "optionally prefixed with !"
            )
        value = value.strip()
        if not value:
            raise SelectionError(f"--limit term {term!r} needs a value after '{prefix}:'")
        if prefix == "tag":
            return _match_tag(inventory, value, term)
        if prefix in ("firmware", "product"):
            return _match_recorded(inventory, prefix, value, term, known or {})
        return _match_group(inventory, value, term)
    if _GLOB_CHARS.intersection(body):
        found = {name for name in inventory.devices if fnmatch.fnmatchcase(name, body)}
        if not found:
            raise SelectionError(f"--limit term {term!r} matches no device")
        return found
    if body not in inventory.devices:
        raise SelectionError(
            f"--limit term {term!r}: no device named {body!r}"
            + _did_you_mean(body, inventory.devices)
        )
    return {body}


def _match_set(
    inventory: Inventory, set_name: str, term: str,
    named_sets: Mapping[str, Collection[str]] | None,
) -> set[str]:
    if not set_name:
        raise SelectionError(f"--limit term {term!r} needs a set name, e.g. @failed")
    if not named_sets:
        raise SelectionError(
            f"--limit term {term!r}: there is no previous run to take @{set_name} from"
        )
    if set_name not in named_sets:
        available = ", ".join(f"@{name}" for name in sorted(named_sets))
        raise SelectionError(
            f"--limit term {term!r}: unknown set @{set_name}; available: {available}"
        )
    members = named_sets[set_name]
    found = {name for name in members if name in inventory.devices}
    if not found:
        why = "the set is empty" if not members else "none of its devices is in this inventory"
        raise SelectionError(f"--limit term {term!r} matches no device ({why})")
    return found


def _match_tag(inventory: Inventory, value: str, term: str) -> set[str]:
    glob = bool(_GLOB_CHARS.intersection(value))
    found = {
        name
        for name, device in inventory.devices.items()
        if any(
            (fnmatch.fnmatchcase(tag, value) if glob else tag == value) for tag in device.tags
        )
    }
    if not found:
        raise SelectionError(
            f"--limit term {term!r} matches no device; known tags: "
            f"{_listing(inventory.known_tags)}"
        )
    return found


def _match_recorded(inventory: Inventory, prefix: str, value: str, term: str,
                    known: Mapping[str, Recorded]) -> set[str]:
    test = (firmware_test if prefix == "firmware" else product_test)(value, term)
    found = {name for name in inventory.devices if test(known.get(name))}
    field = "version" if prefix == "firmware" else "product"
    unrecorded = [n for n in inventory.devices if not getattr(known.get(n), field, None)]
    hint = no_record_hint(len(unrecorded), prefix) if unrecorded else ""
    if hint and hint not in inventory.warnings:
        inventory.warnings.append(hint)
    if not found:
        raise SelectionError(f"--limit term {term!r} matches no device"
                             + (f"; {hint}" if hint else ""))
    return found


def _match_group(inventory: Inventory, value: str, term: str) -> set[str]:
    devices = inventory.devices
    known = sorted(set(inventory.groups) | {g for d in devices.values() for g in d.groups})
    if _GLOB_CHARS.intersection(value):
        wanted = {g for g in known if fnmatch.fnmatchcase(g, value)}
    elif value in known:
        wanted = {value}
    else:
        raise SelectionError(
            f"--limit term {term!r}: unknown group {value!r}{_did_you_mean(value, known)}; "
            f"known groups: {_listing(known)}"
        )
    found = {name for name, device in devices.items() if wanted.intersection(device.groups)}
    if not found:
        raise SelectionError(
            f"--limit term {term!r} matches no device; known groups: {_listing(known)}"
        )
    return found
