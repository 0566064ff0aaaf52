"""cli.runtime — what every verb does around its plan: find the inventory, select devices,
run with progress, render, and turn the outcome into the documented exit code."""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import re
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import typer

from certfleet.fleet.durations import parse_duration
from certfleet.fleet.engine import RunConfig
from certfleet.fleet.engine import run as fleet_run
from certfleet.fleet.errors import InputError
from certfleet.fleet.hooks import Hooks, parse_hook
from certfleet.fleet.inventory import Device, Inventory, load_inventory
from certfleet.fleet.journal import Journal, KnownFirmware, default_journal_path
from certfleet.fleet.plans.base import Plan
from certfleet.fleet.results import (
    EXIT_FAILED,
    EXIT_INPUT,
    EXIT_INTERRUPTED,
    RunResult,
    run_document,
)
from certfleet.fleet.runner import Budget, Event, Notice
from certfleet.fleet.shard import shard_devices
from certfleet.fleet.windows import parse_window

from . import render
from .machine_output import ndjson_finish, ndjson_handler, write_junit
from .options import Common, OutputFormat, Session
from .render_prometheus import emit_prometheus
from .safe_text import scrub

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_INVENTORY = Path("inventory.yaml")

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


def inventory_path(explicit: Path | None, state: Session | None = None) -> Path:
    if explicit is not None:
        return explicit
    root = state.inventory if state is not None else None  # `certfleet -i FILE <verb>`
    if root is not None:
        return root
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


def check_outputs(state: Session) -> None:
    """Every output file the invocation asked for, checked before anything runs."""
    junit = state.junit
    if junit is not None:
        check_output_path(junit, "--junit", parents=True)


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
    check_outputs(common.session)
    inventory = load_inventory(inventory_path(common.inventory, common.session))
    known = recorded_firmware(common) if uses_recorded(common.limit) else {}
    devices = inventory.select(common.limit, named_sets=_named_sets(common), known=known)
    shard = common.session.shard
    if shard:
        devices = shard_devices(devices, shard)
        if not devices:
            render.note(f"shard {shard} holds none of the selected devices")
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


def command_line(state: Session) -> str:
    given = state.command_args
    args = given if given is not None else sys.argv[1:]
    return "certfleet " + " ".join(shlex.quote(a) for a in args)


_ENV_REF = re.compile(r"(?:^|=)env:([A-Za-z_][A-Za-z0-9_]*)$")


def _secret_env_names(devices: Sequence[Device], state: Session) -> frozenset[str]:
    """The environment variables the run's ``env:`` secret references name: the devices'
    passwords and tokens, and every ``env:VAR`` on the command line (passphrases, challenges,
    ...) — hooks never see them."""
    names = {ref.target for device in devices for ref in (device.password, device.token)
             if ref is not None and ref.scheme == "env"}
    given = state.command_args
    args = given if given is not None else sys.argv[1:]
    names.update(m.group(1) for arg in args if (m := _ENV_REF.search(arg)))
    return frozenset(names)


def run_config(plan: Plan[Any], devices: Sequence[Device], common: Common, *,
               command: str | None = None, journal_args: dict[str, Any] | None = None,
               resumed_from: str | None = None) -> RunConfig:
    """The options of this invocation as the engine's :class:`RunConfig` (input errors here)."""
    state = common.session
    hooks = Hooks(on_changed=parse_hook(state.on_changed, "--on-changed"),
                  on_failed=parse_hook(state.on_failed, "--on-failed"),
                  timeout=state.hook_timeout,
                  drop_env=_secret_env_names(devices, state))
    if common.output is OutputFormat.prometheus and plan.name != "status":
        raise InputError("--output prometheus is for status only")
    return RunConfig(
        parallel=common.parallel, device_timeout=common.device_timeout, dry_run=common.dry_run,
        hooks=hooks, windows=tuple(parse_window(w) for w in state.windows),
        waves=tuple(w for item in common.wave or () for w in item.split(",") if w.strip()),
        budget=Budget(Budget.parse(common.max_fail, "--max-fail"),
                      Budget.parse(common.max_unreachable, "--max-unreachable")),
        jitter=parse_duration(state.jitter).total_seconds() if state.jitter else 0.0,
        journal=Path(common.journal or default_journal_path()),  # opened after the checks
        # what the journal keeps of the command line: secrets and URL userinfo masked
        command=scrub(command or command_line(state)),
        inventory=str(inventory_path(common.inventory, state).resolve()),
        journal_args={"limit": common.limit, **(journal_args or {})},
        resumed_from=resumed_from,
    )


def execute(
    plan: Plan[Any],
    devices: Sequence[Device],
    common: Common,
    *,
    command: str | None = None,
    journal_args: dict[str, Any] | None = None,
    resumed_from: str | None = None,
) -> RunResult:
    """Run a plan through the engine's front door, with progress, journaled."""
    check_outputs(common.session)
    label = f"{plan.name}{' (dry run)' if common.dry_run else ''}"
    config = run_config(plan, devices, common, command=command, journal_args=journal_args,
                        resumed_from=resumed_from)
    if common.output is OutputFormat.ndjson:
        progress: Any = contextlib.nullcontext(ndjson_handler)
    elif common.session.quiet or common.output is OutputFormat.prometheus:
        progress = contextlib.nullcontext(None)
    else:
        progress = render.progress(len(devices), label)
    with progress as on_progress:

        def on_event(event: Event) -> None:
            if isinstance(event, Notice):
                (render.warning if event.level == "warning" else render.note)(event.text)
            elif on_progress is not None:
                on_progress(event)

        collect_for_a_fleet_run()
        return fleet_run(plan, devices, config, on_event)


def collect_for_a_fleet_run() -> None:
    """Tune the garbage collector for the run that follows (the CLI's choice, not the
    library's): the young generation is collected every 5,000 allocations instead of 700. A
    device's short-lived objects die with its exchange; collecting them seven times as often
    only rescans what is alive. On a 1,000-device status the collector's CPU went from about
    160 ms in 66 collections to 35 ms in 10 (measured with gc.callbacks, issue 18)."""
    gc.set_threshold(5_000, *gc.get_threshold()[1:])


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
    elif common.session.quiet:
        if run.exit_code():
            render.summary(run)
    else:
        (table or render.run_table)(run)
    problems = list(unwritten)
    junit = common.session.junit
    if junit is not None:
        try:
            write_junit(run, junit)
        except OSError as exc:
            problems.append(f"--junit {junit}: cannot write it: {exc.strerror or exc}")
    for problem in problems:
        render.error(f"{problem} (the run itself is recorded: certfleet runs show {run.run_id})")
    code = run.exit_code() if exit_code is None else exit_code
    if problems and not code:
        code = EXIT_FAILED
    if code:
        raise typer.Exit(code)
