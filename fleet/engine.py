"""fleet.engine — the front door: run one plan on many devices, everything around it included.

::

    from certfleet import fleet
    from certfleet.fleet.plans import PushCa

    inventory = fleet.load_inventory("inventory.yaml")
    result = fleet.run(PushCa(cas=cas), inventory.select(["tag:lobby"]),
                       fleet.RunConfig(parallel=50, journal=Path("runs.sqlite")))
    for device in result.devices:
        print(device.device, device.outcome, device.changes)

:func:`run` does what a run needs besides the plan: it checks the waves and resolves every
secret before any device is contacted (an :class:`~fleet.errors.InputError` otherwise), lets
the plan set itself up (``open`` / ``aclose``, e.g. a signer's connection) in the run's event
loop, takes the journal's lock when devices will be changed, stops on SIGINT / SIGTERM as the
CLI documents (a first signal starts no new device, a second stops those in flight), waits the
jitter, and applies waves, the failure budget and maintenance windows. It never prints: what a
person should be told comes as :class:`~fleet.runner.Notice` events.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ._loop import run as run_loop
from .inventory import Device
from .journal import Journal
from .masking import scrub_data
from .plans.base import Plan
from .results import RunResult
from .runner import (
    Budget,
    EventHandler,
    Notice,
    RunOptions,
    StopSignal,
    plan_waves,
    resolve_secrets,
    run_plan,
)

__all__ = ["RunConfig", "changes_devices", "run", "run_async"]


@dataclass(frozen=True)
class RunConfig(RunOptions):
    """How to run a plan: everything :func:`run` needs besides the plan and the devices (the
    runner's :class:`RunOptions`, and what the front door does around the runner)."""

    #: wave sizes, counts or percentages (``("1", "10%")``); the rest is the last wave
    waves: tuple[str, ...] = ()
    budget: Budget = field(default_factory=Budget)
    #: wait a random time up to this many seconds before changing devices
    jitter: float = 0.0
    #: the run journal: an open one (the caller closes it), a path (opened and closed here),
    #: or None (nothing recorded; ``rotate`` needs one)
    journal: Journal | Path | None = None
    #: what the journal records as the command, the inventory file and the arguments
    command: str | None = None
    inventory: str | None = None
    journal_args: Mapping[str, Any] = field(default_factory=dict)
    resumed_from: str | None = None
    #: stop gracefully on SIGINT / SIGTERM (when running in the main thread)
    signals: bool = True

    def options(self) -> RunOptions:
        """The runner's part of this configuration."""
        return RunOptions(**{f.name: getattr(self, f.name) for f in fields(RunOptions)})


def changes_devices(plan: Plan[Any], config: RunConfig) -> bool:
    """Whether the run may change devices (not a dry run, not a read-only plan)."""
    return not config.dry_run and not getattr(plan, "read_only", False)


def run(plan: Plan[Any], devices: Sequence[Device], config: RunConfig | None = None,
        on_event: EventHandler | None = None) -> RunResult:
    """Run ``plan`` on ``devices`` in a new event loop; per-device results in inventory order.

    Raises :class:`~fleet.errors.InputError` (before any device is contacted) for bad input,
    and ``KeyboardInterrupt`` when a third signal gives up even on the record."""
    try:
        return run_loop(run_async(plan, devices, config, on_event))
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None


async def run_async(plan: Plan[Any], devices: Sequence[Device], config: RunConfig | None = None,
                    on_event: EventHandler | None = None) -> RunResult:
    """:func:`run` in the running event loop."""
    config = config or RunConfig()
    emit = on_event or (lambda event: None)
    options = config.options()  # a bad parallel or timeout is an input error here
    plan_waves(len(devices), config.waves)  # so is a bad wave, before anything runs
    secrets = resolve_secrets(devices)  # and a missing secret
    command = config.command or plan.name
    with _journal(config.journal, emit) as journal:
        check = getattr(plan, "check", None)
        if check is not None:  # what the plan checks up front, e.g. the journal passphrase
            check(devices, journal)
        writes = changes_devices(plan, config)
        lock = journal.lock(command) if writes and journal is not None \
            else contextlib.nullcontext()
        args = scrub_data({**config.journal_args, **_plan_args(plan)})
        with lock, _signals(config.signals, emit) as stop:
            if config.jitter and writes:
                delay = random.uniform(0, config.jitter)
                emit(Notice("note", f"jitter: waiting {delay:.0f}s before starting"))
                await asyncio.sleep(delay)
            await _open(plan)
            try:
                return await run_plan(
                    devices, plan, options, command=command, on_event=on_event,
                    secrets=secrets, journal=journal, journal_args=args,
                    inventory=config.inventory, resumed_from=config.resumed_from,
                    waves=config.waves, budget=config.budget, stop=stop,
                )
            finally:
                await _aclose(plan)


def _plan_args(plan: Plan[Any]) -> dict[str, Any]:
    """What a plan writes to the journal to be rebuilt from it (``runs resume``)."""
    to_journal = getattr(plan, "to_journal", None)
    return dict(to_journal()) if to_journal is not None else {}


async def _open(plan: Plan[Any]) -> None:
    opener = getattr(plan, "open", None)
    if opener is not None:
        await opener()


async def _aclose(plan: Plan[Any]) -> None:
    closer = getattr(plan, "aclose", None)
    if closer is not None:
        await closer()


@contextlib.contextmanager
def _journal(journal: Journal | Path | None, emit: EventHandler) -> Iterator[Journal | None]:
    if journal is None or isinstance(journal, Journal):
        yield journal
        return
    opened = Journal.open(journal)
    for line in opened.warnings:
        emit(Notice("warning", line))
    with opened:
        yield opened


@contextlib.contextmanager
def _signals(enabled: bool, emit: EventHandler) -> Iterator[StopSignal]:
    """SIGINT / SIGTERM: the first starts no new device, the second stops those in flight
    (the run is still recorded), the third cancels the run."""
    stop = StopSignal()
    if not enabled:
        yield stop
        return
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()

    def on_signal(name: str) -> None:
        if stop.aborted:  # a third signal: give up even on the record
            if task is not None:
                task.cancel()
            return
        if stop:  # the second signal: stop the devices in flight too; the run is recorded
            emit(Notice("warning", f"{name} again: stopping the devices in flight now"))
            stop.abort(f"interrupted twice, by {name}")
            return
        stop.set(f"interrupted by {name}")
        emit(Notice("warning", f"{name}: finishing the devices in flight, starting no new "
                    "ones (again to stop at once)"))

    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, on_signal, signal.Signals(signum).name)
            installed.append(signum)
    try:
        yield stop
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
