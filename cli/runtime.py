"""cli.runtime — what every verb does around its plan: find the inventory, select devices,
run with progress, render, and turn the outcome into the documented exit code."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import random
import re
import shlex
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import typer

from cli import render
from cli.machine_output import ndjson_finish, ndjson_handler, write_junit
from cli.options import REPORTING, Common, OutputFormat
from cli.render_prometheus import emit_prometheus
from cli.safe_text import scrub, scrub_data
from fleet.durations import parse_duration
from fleet.errors import InputError
from fleet.hooks import Hooks, parse_hook
from fleet.inventory import Device, Inventory, load_inventory
from fleet.journal import Journal, KnownFirmware, default_journal_path
from fleet.plans.base import Plan
from fleet.results import EXIT_FAILED, EXIT_INPUT, EXIT_INTERRUPTED, RunResult, run_document
from fleet.runner import Budget, RunOptions, StopSignal, plan_waves, resolve_secrets, run_plan
from fleet.shard import shard_devices
from fleet.windows import parse_window

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_INVENTORY = Path("inventory.yaml")

# `certfleet -i FILE <verb>`: set by the root callback, which runs on every invocation.
_root_inventory: Path | None = None


def set_root_inventory(path: Path | None) -> None:
    global _root_inventory
    _root_inventory = path


def guarded(func: Callable[P, R]) -> Callable[P, R]:
    """Input errors become a clear message and exit 2; Ctrl-C becomes exit 130."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except InputError as exc:
            problems = getattr(exc, "problems", None)
            if problems and len(problems) > 1:
                render.error(f"{len(problems)} problems:")
                for problem in problems:
                    render.problem(str(problem))
            else:
                render.error(str(exc))
            raise typer.Exit(EXIT_INPUT) from None
        except KeyboardInterrupt:
            render.error("interrupted")
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper


def inventory_path(explicit: Path | None) -> Path:
    if explicit is not None:
        return explicit
    if _root_inventory is not None:
        return _root_inventory
    env = os.environ.get("CERTFLEET_INVENTORY")
    if env:
        return Path(env)
    if DEFAULT_INVENTORY.exists():
        return DEFAULT_INVENTORY
    raise InputError(
        "no inventory: give -i FILE, set CERTFLEET_INVENTORY, or create ./inventory.yaml "
        "(certfleet sim serve --inventory-out FILE writes one for a simulated fleet)"
    )


def check_output_path(path: Path, option: str, *, parents: bool = False) -> None:
    """A file certfleet will write after the run must be writable now: otherwise an input
    error (exit 2) before any device is contacted, naming the option and the path. With
    ``parents``, missing folders are made when it is written (then the nearest existing one
    must be a writable folder)."""
    if path.is_dir():
        raise InputError(f"{option} {path}: is a folder; give a file name")
    folder = path.parent
    if parents:
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
    if not folder.exists():
        raise InputError(f"{option} {path}: the folder {folder} does not exist")
    if not folder.is_dir():
        raise InputError(f"{option} {path}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{option} {path}: the folder {folder} is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError(f"{option} {path}: the file is not writable")


def check_outputs() -> None:
    """Every output file the invocation asked for, checked before anything runs."""
    if REPORTING.junit is not None:
        check_output_path(REPORTING.junit, "--junit", parents=True)


def open_journal(common: Common) -> Journal:
    return open_journal_at(common.journal)


def open_journal_at(path: Path | None) -> Journal:
    """The journal (``None``: the default one), with what opening it corrected warned about."""
    journal = Journal.open(path)
    for line in journal.warnings:
        render.warning(line)
    return journal


def recorded_firmware(common: Common) -> dict[str, KnownFirmware]:
    """What the journal last recorded of each device's release and product; nothing (and no
    journal file made) when there is no journal yet."""
    path = common.journal or default_journal_path()
    if not Path(path).exists():
        return {}
    with open_journal(common) as journal:
        return journal.known_firmware()


def uses_recorded(limit: Sequence[str] | None) -> bool:
    """Whether ``--limit`` has a term matched against what the journal recorded of devices."""
    return any(word in term for term in limit or () for word in ("firmware:", "product:"))


def select(common: Common) -> tuple[Inventory, list[Device]]:
    check_outputs()
    inventory = load_inventory(inventory_path(common.inventory))
    known = recorded_firmware(common) if uses_recorded(common.limit) else {}
    devices = inventory.select(common.limit, named_sets=_named_sets(common), known=known)
    if REPORTING.shard:
        devices = shard_devices(devices, REPORTING.shard)
        if not devices:
            render.note(f"shard {REPORTING.shard} holds none of the selected devices")
    for line in inventory.warnings:
        render.warning(line)
    return inventory, devices


def _named_sets(common: Common) -> dict[str, frozenset[str]]:
    """The ``@`` sets ``--limit`` may name; the journal is read only for one that is used, and
    a problem with it names the term as the user typed it."""
    terms = [term.strip() for item in common.limit or () for term in item.split(",")]
    used = [term for term in terms if term.lstrip("!").strip() == "@failed"]
    if not used:
        return {"failed": frozenset()}  # not used: the inventory names an unknown set as typed
    try:
        with open_journal(common) as journal:
            return {"failed": frozenset(journal.failed_in_last_run())}
    except InputError as exc:
        raise InputError(f"--limit term {used[0]!r}: {exc}") from None


_command_args: list[str] | None = None


def set_command_args(args: list[str] | None) -> None:
    """For in-process callers (the demo): the arguments the run is reported under."""
    global _command_args
    _command_args = args


def command_line() -> str:
    args = _command_args if _command_args is not None else sys.argv[1:]
    return "certfleet " + " ".join(shlex.quote(a) for a in args)


_ENV_REF = re.compile(r"(?:^|=)env:([A-Za-z_][A-Za-z0-9_]*)$")


def _secret_env_names(devices: Sequence[Device]) -> frozenset[str]:
    """The environment variables the run's ``env:`` secret references name: the devices'
    passwords and tokens, and every ``env:VAR`` on the command line (passphrases, challenges,
    ...) — hooks never see them."""
    names = {ref.target for device in devices for ref in (device.password, device.token)
             if ref is not None and ref.scheme == "env"}
    args = _command_args if _command_args is not None else sys.argv[1:]
    names.update(m.group(1) for arg in args if (m := _ENV_REF.search(arg)))
    return frozenset(names)


def execute(
    plan: Plan[Any],
    devices: Sequence[Device],
    common: Common,
    *,
    command: str | None = None,
    journal_args: dict[str, Any] | None = None,
    resumed_from: str | None = None,
    before: Callable[[], Awaitable[None]] | None = None,
    after: Callable[[], Awaitable[None]] | None = None,
) -> RunResult:
    """Run a plan with progress, journaled. ``before``/``after`` run in the same event loop
    (for what a plan needs set up there, e.g. a signer's connection)."""
    check_outputs()
    hooks = Hooks(on_changed=parse_hook(REPORTING.on_changed, "--on-changed"),
                  on_failed=parse_hook(REPORTING.on_failed, "--on-failed"),
                  timeout=REPORTING.hook_timeout,
                  drop_env=_secret_env_names(devices))
    if common.output is OutputFormat.prometheus and plan.name != "status":
        raise InputError("--output prometheus is for status only")
    windows = tuple(parse_window(w) for w in REPORTING.windows)
    jitter = parse_duration(REPORTING.jitter).total_seconds() if REPORTING.jitter else 0.0
    options = RunOptions(
        parallel=common.parallel, device_timeout=common.device_timeout, dry_run=common.dry_run,
        hooks=hooks, windows=windows,
    )
    budget = Budget(Budget.parse(common.max_fail, "--max-fail"),
                    Budget.parse(common.max_unreachable, "--max-unreachable"))
    waves = [w for item in common.wave or () for w in item.split(",") if w.strip()]
    plan_waves(len(devices), waves)  # a bad --wave is an input error before anything runs
    secrets = resolve_secrets(devices)  # before anything is touched: exit 2 if one is missing
    label = f"{plan.name}{' (dry run)' if common.dry_run else ''}"
    # what the journal keeps of the command line and arguments: secrets and URL userinfo masked
    command = scrub(command or command_line())
    args = scrub_data({"limit": common.limit, **(journal_args or {})})
    inventory = str(inventory_path(common.inventory).resolve())

    stop = StopSignal()

    async def main(on_event: Any) -> RunResult:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()

        def on_signal(name: str) -> None:
            if stop.aborted:  # a third signal: give up even on the record
                assert task is not None
                task.cancel()
                return
            if stop:  # the second signal: stop the devices in flight too; the run is recorded
                render.warning(f"{name} again: stopping the devices in flight now")
                stop.abort(f"interrupted twice, by {name}")
                return
            stop.set(f"interrupted by {name}")
            render.warning(f"{name}: finishing the devices in flight, starting no new ones "
                           "(again to stop at once)")

        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, on_signal, signal.Signals(signum).name)
        if jitter and not common.dry_run and not getattr(plan, "read_only", False):
            delay = random.uniform(0, jitter)
            render.note(f"--jitter: waiting {delay:.0f}s before starting")
            await asyncio.sleep(delay)
        if before is not None:
            await before()
        try:
            return await run_plan(
                devices,
                plan,
                options,
                command=command,
                on_event=on_event,
                secrets=secrets,
                journal=journal,
                journal_args=args,
                inventory=inventory,
                resumed_from=resumed_from,
                waves=waves,
                budget=budget,
                stop=stop,
            )
        finally:
            if after is not None:
                await after()

    changes_devices = not common.dry_run and not getattr(plan, "read_only", False)
    with open_journal(common) as journal:
        lock = journal.lock(command) if changes_devices \
            else contextlib.nullcontext()
        if common.output is OutputFormat.ndjson:
            progress: Any = contextlib.nullcontext(ndjson_handler)
        elif REPORTING.quiet or common.output is OutputFormat.prometheus:
            progress = contextlib.nullcontext(None)
        else:
            progress = render.progress(len(devices), label)
        with lock, progress as on_event:
            try:
                return asyncio.run(main(on_event))
            except asyncio.CancelledError:
                raise KeyboardInterrupt from None


def finish(run: RunResult, common: Common, *, table: Callable[[RunResult], None] | None = None,
           exit_code: int | None = None, extra: dict[str, Any] | None = None,
           unwritten: Sequence[str] = ()) -> None:
    """Render the run as asked (table, json with ``extra`` fields, ndjson, quiet), write the
    JUnit file if asked, and exit with the documented code.

    The run's record comes first: stdout's output is written before any file, and a file that
    cannot be written (``unwritten`` lists those the caller already failed to write) is named
    on stderr after the others are written, and the exit code is not 0."""
    if common.output is OutputFormat.json:
        render.emit_json({**run_document(run, lazy=True), **(extra or {})})
    elif common.output is OutputFormat.ndjson:
        ndjson_finish(run)
    elif common.output is OutputFormat.prometheus:
        emit_prometheus(run)
    elif REPORTING.quiet:
        if run.exit_code():
            render.summary(run)
    else:
        (table or render.run_table)(run)
    problems = list(unwritten)
    if REPORTING.junit is not None:
        try:
            write_junit(run, REPORTING.junit)
        except OSError as exc:
            problems.append(f"--junit {REPORTING.junit}: cannot write it: {exc.strerror or exc}")
    for problem in problems:
        render.error(f"{problem} (the run itself is recorded: certfleet runs show {run.run_id})")
    code = run.exit_code() if exit_code is None else exit_code
    if problems and not code:
        code = EXIT_FAILED
    if code:
        raise typer.Exit(code)
