"""cli.main — the `certfleet` command: verbs wired to their modules under cli/commands/."""

from __future__ import annotations

from pathlib import Path

import typer

from cli.commands import (
    ca,
    csr,
    demo,
    enroll,
    import_webex,
    inventory,
    network,
    push_ca,
    push_cert,
    renewal,
    report,
    rotate,
    runs,
    sim,
    status,
)
from cli.examples import add_examples
from cli.options import Session
from fleet import __version__

app = typer.Typer(
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


inventory.app.command("import-webex")(import_webex.import_webex)
app.add_typer(inventory.app, name="inventory")
app.add_typer(sim.app, name="sim")
app.add_typer(runs.app, name="runs")
app.add_typer(ca.app, name="ca")
app.add_typer(renewal.app, name="renewal")
app.command("status")(status.status)
app.command("push-ca")(push_ca.push_ca)
app.command("push-cert")(push_cert.push_cert)
app.command("rotate")(rotate.rotate)
app.command("csr")(csr.csr)
app.command("enroll")(enroll.enroll)
app.command("dot1x")(network.dot1x)
app.command("wifi")(network.wifi)
app.command("report")(report.report)
app.command("demo")(demo.demo)
add_examples(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
