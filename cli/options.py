"""cli.options — the options every verb shares, declared once."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from certfleet.fleet.runner import DEFAULT_PARALLEL


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    ndjson = "ndjson"
    prometheus = "prometheus"  # status only


InventoryOpt = Annotated[
    Path | None,
    typer.Option(
        "--inventory",
        "-i",
        help="Inventory YAML file (env CERTFLEET_INVENTORY, or ./inventory.yaml).",
        show_default=False,
    ),
]
LimitOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--limit",
        "-l",
        help="Devices to act on: names, globs, tag:x, group:y, !excluded "
        "(repeat or comma-separate).",
        show_default=False,
    ),
]
ParallelOpt = Annotated[
    int,
    typer.Option("--parallel", "-p", min=1, max=1000, help="Devices worked on at once."),
]
OutputOpt = Annotated[
    OutputFormat,
    typer.Option(
        "--output", "-o",
        help="table for people; json (certfleet/run/v1) or ndjson (events as they happen).",
    ),
]
DryRunOpt = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="Read the real device state and show what would change; write nothing.",
    ),
]
JournalOpt = Annotated[
    Path | None,
    typer.Option(
        "--journal",
        help="Run journal (SQLite) (env CERTFLEET_JOURNAL, or one in the user data folder).",
        show_default=False,
    ),
]
WaveOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--wave",
        help="Roll out in waves: sizes or percentages, e.g. 1,10%,50% (the rest is the last wave).",
        show_default=False,
    ),
]
MaxFailOpt = Annotated[
    str | None,
    typer.Option("--max-fail", help="Stop starting devices once more than N (or P%) failed.",
                 show_default=False),
]
MaxUnreachableOpt = Annotated[
    str | None,
    typer.Option("--max-unreachable",
                 help="Stop once more than N (or P%) were unreachable (counted apart).",
                 show_default=False),
]
TimeoutOpt = Annotated[
    float,
    typer.Option("--device-timeout", min=1.0, help="Seconds one device may take in all."),
]


@dataclass
class Session:
    """What the root callback's options set for the verb of one invocation (``-i``,
    ``--junit``, ``--shard``, ``--quiet``, hooks, windows, jitter), kept in Typer's context
    object; and, for an in-process caller (the demo), the arguments the run is reported
    under."""

    inventory: Path | None = None
    junit: Path | None = None
    shard: str | None = None
    quiet: bool = False
    on_changed: str | None = None
    on_failed: str | None = None
    hook_timeout: float = 60.0
    windows: tuple[str, ...] = ()
    jitter: str | None = None
    #: None: the process's own (sys.argv)
    command_args: list[str] | None = None


def session_of(ctx: typer.Context) -> Session:
    """This invocation's :class:`Session`, from Typer's context object."""
    found = ctx.find_object(Session)
    return found if found is not None else Session()


@dataclass(frozen=True)
class Common:
    """The shared options of one invocation."""

    inventory: Path | None
    limit: list[str] | None
    parallel: int = DEFAULT_PARALLEL
    output: OutputFormat = OutputFormat.table
    dry_run: bool = False
    device_timeout: float = 300.0
    journal: Path | None = None
    wave: list[str] | None = None
    max_fail: str | None = None
    max_unreachable: str | None = None
    session: Session = field(default_factory=Session)


F = TypeVar("F", bound=Callable[..., Any])

# (name, type, default) of the options on every verb that reaches devices, then of those that
# only verbs changing devices have; their names are Common's fields
_READ_OPTIONS: tuple[tuple[str, Any, Any], ...] = (
    ("inventory", InventoryOpt, None),
    ("limit", LimitOpt, None),
    ("parallel", ParallelOpt, DEFAULT_PARALLEL),
    ("output", OutputOpt, OutputFormat.table),
    ("device_timeout", TimeoutOpt, 300.0),
    ("journal", JournalOpt, None),
)
_CHANGE_OPTIONS: tuple[tuple[str, Any, Any], ...] = (
    ("dry_run", DryRunOpt, False),
    ("wave", WaveOpt, None),
    ("max_fail", MaxFailOpt, None),
    ("max_unreachable", MaxUnreachableOpt, None),
)


def fleet_options(*, changes: bool) -> Callable[[F], F]:
    """Give a verb the options every fleet verb shares — and, with ``changes``, ``--dry-run``
    and run control (``--wave``, ``--max-fail``, ``--max-unreachable``) — declared once here.
    The verb takes ``common: Common`` instead of those parameters (with the invocation's
    :class:`Session` from Typer's context object); Typer sees them all."""
    shared = _READ_OPTIONS + (_CHANGE_OPTIONS if changes else ())
    names = {name for name, _, _ in shared}
    assert names <= {f.name for f in fields(Common)}

    def decorate(verb: F) -> F:
        own = inspect.signature(verb, eval_str=True)
        params = [p for p in own.parameters.values() if p.name != "common"]
        params += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                     annotation=kind) for name, kind, default in shared]
        params.append(inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY,
                                        annotation=typer.Context))

        @functools.wraps(verb)
        def run(*args: Any, **kwargs: Any) -> Any:
            state = session_of(kwargs.pop("ctx"))
            common = Common(**{name: kwargs.pop(name) for name in names}, session=state)
            return verb(*args, common=common, **kwargs)

        run.__signature__ = own.replace(parameters=params)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in params}
        return run  # type: ignore[return-value]

    return decorate
