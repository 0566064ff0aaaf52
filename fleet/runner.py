"""fleet.runner — run one plan on many devices at once.

* bounded concurrency (``parallel`` workers pull devices from a queue, so 10,000 devices cost
  10,000 queue entries, not 10,000 tasks);
* a time budget per device: one slow or hung device never holds up the others;
* secrets are resolved once, before any device is touched (a missing secret is an input error);
* per-device outcome ``ok | changed | failed | unreachable | skipped`` with the error's kind,
  message and xAPI path, and every xAPI call recorded with its timing;
* events (device started / finished) for progress displays; the runner itself never prints.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets as _stdlib_secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import (
    DeviceSkipped,
    InputError,
    SecretError,
    SigningPending,
    UnreachableError,
)
from .hooks import Hooks
from .inventory import Device
from .journal import Journal
from .plans.base import DeviceContext, Plan
from .results import DeviceResult, ErrorInfo, Outcome, RunResult
from .secrets import Secret, SecretRef
from .windows import Window, next_opening, open_now
from .xapi.commands import Xapi
from .xapi.connector import Connector, RetryPolicy, Timeouts
from .xapi.local import fetch_peer_certificate
from .xapi.transport import interrupted_call

__all__ = [
    "Budget",
    "Connector",
    "DeviceFinished",
    "DeviceStarted",
    "Event",
    "EventHandler",
    "Notice",
    "RunOptions",
    "StopSignal",
    "new_run_id",
    "plan_waves",
    "resolve_secrets",
    "run_plan",
]

DEFAULT_PARALLEL = 20


@dataclass(frozen=True)
class RunOptions:
    parallel: int = DEFAULT_PARALLEL
    device_timeout: float = 300.0
    dry_run: bool = False
    timeouts: Timeouts = field(default_factory=Timeouts)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    hooks: Hooks = field(default_factory=Hooks)
    #: maintenance windows: devices are only changed while one is open on their clock
    windows: tuple[Window, ...] = ()

    def __post_init__(self) -> None:
        if self.parallel < 1:
            raise InputError(f"--parallel must be at least 1, not {self.parallel}")
        if self.device_timeout <= 0:
            raise InputError("the device timeout must be positive")


@dataclass(frozen=True)
class DeviceStarted:
    device: str
    index: int
    total: int


@dataclass(frozen=True)
class DeviceFinished:
    result: DeviceResult
    done: int
    total: int


@dataclass(frozen=True)
class Notice:
    """Something a person should be told while the run goes on (``level``: warning or note),
    e.g. that a signal was received. The runner never prints; a front end shows these."""

    level: str
    text: str


Event = DeviceStarted | DeviceFinished | Notice
EventHandler = Callable[[Event], None]


def new_run_id(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{_stdlib_secrets.token_hex(3)}"


def resolve_secrets(devices: Sequence[Device]) -> dict[SecretRef, Secret]:
    """Resolve every distinct secret reference once. Raises SecretError naming the devices."""
    refs: dict[SecretRef, list[str]] = {}
    for device in devices:
        for ref in (device.password, device.token):
            if ref is not None:
                refs.setdefault(ref, []).append(device.name)
    resolved: dict[SecretRef, Secret] = {}
    for ref, users in refs.items():
        try:
            resolved[ref] = ref.resolve()
        except SecretError as exc:
            names = ", ".join(users[:3]) + (f" and {len(users) - 3} more" if len(users) > 3 else "")
            raise SecretError(f"{exc.message} (needed by {names})") from exc
    return resolved


async def _run_device(
    device: Device,
    plan: Plan[Any],
    options: RunOptions,
    connector: Connector,
    run_id: str,
    journal: Journal | None,
) -> DeviceResult:
    result = DeviceResult(device=device.name, host=device.host, transport=device.transport)
    started = time.perf_counter()
    try:
        async with asyncio.timeout(options.device_timeout):
            transport = connector.transport(device, result.calls.append)
            async with transport:
                ctx = DeviceContext(
                    device=device,
                    xapi=Xapi(transport, read_only=options.dry_run),
                    result=result,
                    dry_run=options.dry_run,
                    run_id=run_id,
                    journal=journal,
                    # a device reached only through the cloud has no address to shake
                    # hands with: its HTTPS certificate is checked in the services list only
                    peer_certificate=(
                        (lambda: fetch_peer_certificate(device)) if device.host else None
                    ),
                )
                await ctx.learn_firmware()  # once per device per run; plans build on it
                state = await plan.read(ctx)
                changes = plan.diff(ctx, state)
                result.changes = changes
                if changes and not options.dry_run:
                    await plan.apply(ctx, state, changes)
        result.outcome = Outcome.CHANGED if result.changes else Outcome.OK
    except (SigningPending, DeviceSkipped) as exc:
        # out for signing by hand: not a failure, nothing changed yet; the next run picks it up
        result.outcome = Outcome.SKIPPED
        result.message = exc.message
    except UnreachableError as exc:
        result.outcome = Outcome.UNREACHABLE
        result.error = ErrorInfo.from_exception(exc)
    except TimeoutError as exc:
        result.outcome = Outcome.FAILED
        result.error = ErrorInfo(
            kind="timeout",
            message=f"did not finish within {options.device_timeout:g}s",
            xpath=interrupted_call(result.calls),  # the call that was in flight
        )
        del exc
    except Exception as exc:  # one device's failure, whatever it is, is that device's result
        result.outcome = Outcome.FAILED
        result.error = ErrorInfo.from_exception(exc)
    result.duration_ms = (time.perf_counter() - started) * 1000
    return result


@dataclass(frozen=True)
class Budget:
    """How many devices may fail before the run stops starting new ones.

    ``failed`` and ``unreachable`` are counted apart: a device that could not be reached is
    not a device that was broken. Each limit is a count or a fraction of the selected
    devices; ``None`` means no limit. The run stops (exit 3) when a count goes *over* its
    limit: ``--max-fail 0`` stops at the first failure.
    """

    max_failed: int | float | None = None
    max_unreachable: int | float | None = None

    @staticmethod
    def parse(text: str | None, what: str) -> int | float | None:
        if text is None:
            return None
        value = text.strip()
        try:
            if value.endswith("%"):
                percent = float(value[:-1])
                if not 0 <= percent <= 100:
                    raise ValueError
                return percent / 100
            count = int(value)
            if count < 0:
                raise ValueError
            return count
        except ValueError:
            raise InputError(f"{what} takes a count (3) or a percentage (10%), not {text!r}") \
                from None

    def _limit(self, limit: int | float | None, total: int) -> float:
        if limit is None:
            return float("inf")
        return limit * total if isinstance(limit, float) else float(limit)

    def exceeded(self, failed: int, unreachable: int, total: int) -> str | None:
        if failed > self._limit(self.max_failed, total):
            return f"{failed} device(s) failed, over the --max-fail budget"
        if unreachable > self._limit(self.max_unreachable, total):
            return f"{unreachable} device(s) unreachable, over the --max-unreachable budget"
        return None


def plan_waves(total: int, spec: Sequence[str] | None) -> list[int]:
    """``["1", "10%", "50%"]`` → sizes of the successive waves; the rest is the last wave.

    Percentages are of the whole selection; a wave is at least one device.
    """
    if not spec:
        return [total] if total else []
    sizes: list[int] = []
    left = total
    for raw in spec:
        item = raw.strip()
        try:
            size = (max(1, round(total * float(item[:-1]) / 100)) if item.endswith("%")
                    else int(item))
        except ValueError:
            raise InputError(f"--wave takes counts and percentages (1,10%,50%), not {raw!r}") \
                from None
        if size < 1:
            raise InputError(f"--wave sizes must be at least 1, not {raw!r}")
        size = min(size, left)
        if size:
            sizes.append(size)
            left -= size
    if left:
        sizes.append(left)
    return sizes


class StopSignal:
    """Set from a signal handler: no new device is started; devices in flight finish.

    :meth:`abort` (a second signal) stops the devices in flight too, at once; the run still
    ends normally, with every device done so far, and those cut off reported ``failed``
    (kind ``interrupted``): what they changed is unknown until they are read again.
    """

    def __init__(self) -> None:
        self.reason: str | None = None
        self.aborted: str | None = None
        self._on_abort: list[Callable[[], None]] = []

    def set(self, reason: str) -> None:
        self.reason = self.reason or reason

    def abort(self, reason: str) -> None:
        self.set(reason)
        self.aborted = self.aborted or reason
        for callback in self._on_abort:
            callback()

    def on_abort(self, callback: Callable[[], None]) -> None:
        self._on_abort.append(callback)

    def __bool__(self) -> bool:
        return self.reason is not None


def _cut_off(devices: Sequence[Device], in_flight: set[int],
             results: list[DeviceResult | None], reason: str, run_id: str,
             journal: Journal | None) -> None:
    """The devices stopped mid-way by an abort: failed, and journaled so that ``runs resume``
    and ``@failed`` take them up."""
    for index in sorted(in_flight):
        device = devices[index]
        result = DeviceResult(
            device=device.name, host=device.host, transport=device.transport,
            outcome=Outcome.FAILED,
            error=ErrorInfo(kind="interrupted",
                            message=f"stopped mid-way ({reason}); what it changed is unknown "
                            "until it is read again: certfleet runs resume"),
        )
        results[index] = result
        if journal is not None:
            journal.record_device(run_id, result)
    in_flight.clear()


async def run_plan(
    devices: Sequence[Device],
    plan: Plan[Any],
    options: RunOptions,
    *,
    command: str,
    on_event: EventHandler | None = None,
    secrets: dict[SecretRef, Secret] | None = None,
    journal: Journal | None = None,
    journal_args: dict[str, Any] | None = None,
    inventory: str | None = None,
    resumed_from: str | None = None,
    waves: Sequence[str] | None = None,
    budget: Budget | None = None,
    stop: StopSignal | None = None,
) -> RunResult:
    """Run ``plan`` on every device; results come back in inventory order.

    Devices go in waves (each wave finishes before the next starts); the failure budget is
    checked after every device, and once it is exceeded — or ``stop`` is set — no new device
    starts, devices in flight finish, and the rest are reported ``skipped`` with the reason.
    With a journal, the run and every device's result are recorded as they finish (device
    results in batches a fraction of a second apart: :mod:`fleet.journal`), so a run that is
    killed can be seen (status ``running``) and resumed.

    :func:`fleet.engine.run` is the front door that assembles these arguments.
    """
    run = RunResult(
        run_id=new_run_id(),
        command=command,
        verb=plan.name,
        started=dt.datetime.now(dt.UTC),
        dry_run=options.dry_run,
    )
    rollout = _Rollout(
        devices, plan, options, run,
        connector=Connector(secrets if secrets is not None else resolve_secrets(devices),
                            options),
        journal=journal, budget=budget or Budget(),
        stop=stop if stop is not None else StopSignal(),
        emit=on_event or (lambda event: None),
    )
    if journal is not None:
        journal.start_run(run, inventory=inventory, args=journal_args or {},
                          resumed_from=resumed_from)
    try:
        await rollout.all_waves(plan_waves(len(devices), waves))
    finally:
        await rollout.connector.aclose()
        run.devices = [r for r in rollout.results if r is not None]
        run.finished = dt.datetime.now(dt.UTC)
        if journal is not None:
            journal.finish_run(run)
    return run


class _Rollout:
    """The state of one run while its devices go: results in inventory order, the counts the
    budget is checked against, the devices in flight, the workers of the current wave."""

    def __init__(self, devices: Sequence[Device], plan: Plan[Any], options: RunOptions,
                 run: RunResult, *, connector: Connector, journal: Journal | None,
                 budget: Budget, stop: StopSignal, emit: EventHandler) -> None:
        self.devices, self.plan, self.options, self.run = devices, plan, options, run
        self.connector, self.journal, self.budget, self.stop = connector, journal, budget, stop
        self.emit = emit
        self.total = len(devices)
        self.results: list[DeviceResult | None] = [None] * self.total
        self.done = self.failed = self.unreachable = 0
        self.halted: str | None = None
        self.in_flight: set[int] = set()
        self.workers: list[asyncio.Task[None]] = []
        stop.on_abort(self._cancel_workers)

    def _cancel_workers(self) -> None:
        for task in self.workers:
            task.cancel()

    async def all_waves(self, sizes: Sequence[int]) -> None:
        start = 0
        for size in sizes:
            if self.halted or self.stop:
                break
            await self._wave(range(start, start + size))
            start += size
        self._skip_the_rest()

    async def _wave(self, indices: range) -> None:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for index in indices:
            queue.put_nowait(index)
        self.workers[:] = [asyncio.create_task(self._worker(queue))
                           for _ in range(min(self.options.parallel, len(indices)))]
        try:
            await asyncio.gather(*self.workers)
        except BaseException:
            for task in self.workers:
                task.cancel()
            await asyncio.gather(*self.workers, return_exceptions=True)
            self.run.interrupted = True
            if not self.stop.aborted:
                raise
            _cut_off(self.devices, self.in_flight, self.results, self.stop.aborted,
                     self.run.run_id, self.journal)

    async def _worker(self, queue: asyncio.Queue[int]) -> None:
        while not self.halted and not self.stop:
            try:
                index = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            self.in_flight.add(index)
            device = self.devices[index]
            self.emit(DeviceStarted(device=device.name, index=index, total=self.total))
            result = await self._one(device)
            if self.options.hooks and not self.options.dry_run:
                await self.options.hooks.run(result, verb=self.plan.name, run_id=self.run.run_id)
            self.results[index] = result
            self.in_flight.discard(index)
            self._record(result)

    async def _one(self, device: Device) -> DeviceResult:
        options = self.options
        if (options.windows and not options.dry_run and not getattr(self.plan, "read_only", False)
                and not open_now(options.windows, now := dt.datetime.now(dt.UTC),
                                 device.timezone)):
            opens = next_opening(options.windows, now, device.timezone)
            return DeviceResult(
                device=device.name, host=device.host, transport=device.transport,
                outcome=Outcome.SKIPPED,
                message="outside the maintenance windows"
                + (f"; the next opens {opens.isoformat(timespec='minutes')}" if opens else ""),
            )
        return await _run_device(device, self.plan, options, self.connector, self.run.run_id,
                                 self.journal)

    def _record(self, result: DeviceResult) -> None:
        if self.journal is not None:
            self.journal.record_device(self.run.run_id, result)
            if result.firmware:  # for --limit firmware:/product: later
                self.journal.record_firmware(self.run.run_id, result.device, result.firmware)
        self.done += 1
        self.failed += result.outcome is Outcome.FAILED
        self.unreachable += result.outcome is Outcome.UNREACHABLE
        self.halted = self.halted or self.budget.exceeded(self.failed, self.unreachable,
                                                          self.total)
        self.emit(DeviceFinished(result=result, done=self.done, total=self.total))

    def _skip_the_rest(self) -> None:
        """After the budget or a signal stopped the run: the devices not started, skipped."""
        run, halted, stop = self.run, self.halted, self.stop
        reason = halted or (f"not started: {stop.reason}" if stop else None)
        if halted:
            run.stopped_by_budget = True
            run.notes.append(f"stopped: {halted}")
        if stop:
            run.interrupted = True
            run.notes.append(f"stopped: {stop.reason}; resume with certfleet runs resume")
        for index, result in enumerate(self.results):
            if result is None and reason:
                device = self.devices[index]
                self.results[index] = DeviceResult(
                    device=device.name, host=device.host, transport=device.transport,
                    outcome=Outcome.SKIPPED,
                    message=("not started: " + halted) if halted else (reason or ""),
                )
