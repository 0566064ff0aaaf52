"""cli.main — the `certfleet` command: verbs wired to their modules under cli/commands/."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperGroup

from certfleet.fleet import __version__

from .examples import add_examples
from .options import Session

if TYPE_CHECKING:  # Typer 0.29 carries its own click: its commands are of these classes
    from typer._click import Command, Context

#: verb -> (its module under cli.commands, the command function; None: the module's ``app``,
#: a group of verbs). A verb's module -- and what it imports (the SCEP client, ruamel.yaml, the
#: HTML report, ...) -- is imported only when that verb runs or its help is shown, so
#: `certfleet status` pays for status alone (start-up cost, issue 18). Order: as in --help.
VERBS: dict[str, tuple[str, str | None]] = {
    "status": ("status", "status"),
    "push-ca": ("push_ca", "push_ca"),
    "push-cert": ("push_cert", "push_cert"),
    "rotate": ("rotate", "rotate"),
    "csr": ("csr", "csr"),
    "enroll": ("enroll", "enroll"),
    "dot1x": ("network", "dot1x"),
    "wifi": ("network", "wifi"),
    "report": ("report", "report"),
    "demo": ("demo", "demo"),
    "inventory": ("inventory", None),
    "sim": ("sim", None),
    "runs": ("runs", None),
    "ca": ("ca", None),
    "renewal": ("renewal", None),
}


def _module(name: str) -> Any:
    return import_module(f".{name}", "certfleet.cli.commands")


def _with_import_webex(group: typer.Typer) -> typer.Typer:
    """`inventory import-webex` lives in its own module (added once)."""
    if not any(info.name == "import-webex" for info in group.registered_commands):
        group.command("import-webex")(_module("import_webex").import_webex)
    return group


def load_verb(name: str) -> Command:
    """The click command of one verb, its module imported now, its example as its epilog."""
    module_name, function = VERBS[name]
    module = _module(module_name)
    if function is None:
        sub: typer.Typer = module.app
        if name == "inventory":
            _with_import_webex(sub)
        add_examples(sub, (name,))
        command: Command = typer.main.get_group(sub)
    else:
        single = typer.Typer()
        single.command(name)(getattr(module, function))
        add_examples(single, ())
        command = typer.main.get_command(single)
    command.name = name
    return command


class LazyVerbs(TyperGroup):
    """The root group: a verb is loaded (:func:`load_verb`) when it is looked up; listing the
    names loads nothing; ``commands`` (every verb, e.g. for a walk over all of them) loads all."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._loaded: dict[str, Command] = {}
        self._load: Callable[[str], Command] = load_verb
        super().__init__(*args, **kwargs)

    @property  # type: ignore[override]
    def commands(self) -> dict[str, Command]:
        for name in VERBS:
            self._verb(name)
        return self._loaded

    @commands.setter
    def commands(self, value: dict[str, Command]) -> None:
        self._loaded.update(value)

    def _verb(self, name: str) -> Command | None:
        if name not in self._loaded and name in VERBS:
            self._loaded[name] = self._load(name)
        return self._loaded.get(name)

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        return self._verb(cmd_name)

    def list_commands(self, ctx: Context) -> list[str]:
        return [*VERBS, *(name for name in self._loaded if name not in VERBS)]


app = typer.Typer(
    cls=LazyVerbs,
    name="certfleet",
    help="Keep certificates right across fleets of Cisco RoomOS devices.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"certfleet {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    inventory: Path | None = typer.Option(
        None, "--inventory", "-i", help="Inventory YAML for every verb (env CERTFLEET_INVENTORY)."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
    junit: Path | None = typer.Option(
        None, "--junit", help="Also write a JUnit XML report: a test case per device and step."
    ),
    shard: str | None = typer.Option(
        None, "--shard", help="K/N: act on a stable 1/N share of the selection (CI matrices)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress and no table."),
    on_changed: str | None = typer.Option(
        None, "--on-changed", help="Program run per changed device (metadata in CERTFLEET_*)."
    ),
    on_failed: str | None = typer.Option(
        None, "--on-failed", help="Program run per failed or unreachable device."
    ),
    hook_timeout: float = typer.Option(60.0, "--hook-timeout", min=1.0,
                                       help="Seconds a hook may take."),
    window: list[str] | None = typer.Option(
        None, "--window",
        help="Maintenance window, e.g. 'Sat 01:00-05:00 Europe/Oslo' (repeatable); devices "
        "are changed only inside one, on their own clock.",
    ),
    jitter: str | None = typer.Option(
        None, "--jitter", help="Wait a random time up to this (e.g. 10m) before changing."
    ),
) -> None:
    # in Typer's context object for the verb (an in-process caller may have put one there)
    state = ctx.ensure_object(Session)
    state.inventory, state.junit, state.shard, state.quiet = inventory, junit, shard, quiet
    state.on_changed, state.on_failed = on_changed, on_failed
    state.hook_timeout = hook_timeout
    state.windows, state.jitter = tuple(window or ()), jitter


add_examples(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
