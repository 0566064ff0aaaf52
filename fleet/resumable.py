"""fleet.resumable — take up a run that did not finish, from what the journal recorded of it.

A plan that can be resumed writes what rebuilds it to the journal (``to_journal``) and is
rebuilt by a ``from_journal`` class method listed in :data:`RESUMABLE`. :func:`resume_point`
finds the run, rebuilds its plan and picks the devices that did not finish (of those the run
selected, from the same inventory file); :func:`resume` runs it through the front door.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .engine import RunConfig, run
from .errors import InputError
from .inventory import Device, load_inventory
from .journal import Journal
from .plans.base import Plan
from .plans.rotate import Rotate
from .results import RunResult
from .runner import EventHandler

__all__ = ["RESUMABLE", "ResumePoint", "resume", "resume_point"]

#: verb → how its plan is rebuilt from the arguments it wrote to the journal
RESUMABLE: Mapping[str, Callable[[Mapping[str, Any]], Plan[Any]]] = {
    "rotate": Rotate.from_journal,
}


@dataclass(frozen=True)
class ResumePoint:
    run_id: str
    #: the run's plan, rebuilt; None when there is nothing to resume (its arguments, which
    #: may name secrets that are gone by now, are then not resolved)
    plan: Plan[Any] | None
    inventory: Path
    #: the devices that did not finish, in inventory order (empty: nothing to resume)
    devices: Sequence[Device]


def resume_point(journal_path: Path | None, run_id: str = "last") -> ResumePoint:
    """The run ``run_id`` (or the last resumable one) in the journal, ready to go again.
    InputError when it cannot be resumed (another verb, inventory gone)."""
    with Journal.open(journal_path) as journal:
        record = journal.run(run_id, verbs=tuple(RESUMABLE))
        rebuild = RESUMABLE.get(record.verb)
        if rebuild is None:
            raise InputError(
                f"run {record.run_id} is a {record.verb} run; only {', '.join(RESUMABLE)} runs "
                f"are resumed (re-run the command instead: {record.command})"
            )
        if record.inventory is None or not Path(record.inventory).exists():
            raise InputError(f"run {record.run_id}: its inventory {record.inventory} is gone")
        inventory = load_inventory(record.inventory)
        selected = inventory.select(record.args.get("limit"), known=journal.known_firmware())
        todo = set(journal.unfinished_devices(record.run_id, [d.name for d in selected]))
    devices = [d for d in selected if d.name in todo]
    plan = rebuild(record.args) if devices else None
    return ResumePoint(record.run_id, plan, Path(record.inventory), devices)


def resume(journal: Path, run_id: str = "last", config: RunConfig | None = None,
           on_event: EventHandler | None = None) -> RunResult | None:
    """Resume ``run_id`` on the devices that did not finish; None when every one did."""
    point = resume_point(journal, run_id)
    if point.plan is None or not point.devices:
        return None
    config = dataclasses.replace(
        config or RunConfig(), journal=journal, resumed_from=point.run_id,
        inventory=str(point.inventory.resolve()),
        journal_args={"limit": [d.name for d in point.devices]},
    )
    return run(point.plan, point.devices, config, on_event)

