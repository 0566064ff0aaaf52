"""certfleet renewal list|set|delete — the devices' own SCEP renewal profiles."""

from __future__ import annotations

import typer
from rich.table import Table

from certfleet.fleet.errors import InputError
from certfleet.fleet.pki.certs import normalize_fingerprint
from certfleet.fleet.plans.renewal import RenewalDelete, RenewalList, RenewalSet
from certfleet.fleet.results import RunResult
from certfleet.fleet.secrets import parse_secret_ref

from .. import render
from ..options import Common, fleet_options
from ..runtime import execute, finish, guarded, select

app = typer.Typer(help="The devices' SCEP renewal profiles (the device renews by itself).",
                  no_args_is_help=True)


def _fingerprint(text: str) -> str:
    try:
        return normalize_fingerprint(text)
    except ValueError:
        raise InputError(f"--ca-fingerprint {text!r} is not a hex fingerprint") from None


def _table(run: RunResult) -> None:
    table = Table(title="SCEP renewal profiles", title_justify="left")
    for name in ("device", "CA fingerprint", "URL"):
        table.add_column(name, overflow="fold")
    count = 0
    for result in run.devices:
        for profile in result.facts.get("profiles", []):
            table.add_row(render.line(result.device), profile["fingerprint"], profile["url"])
            count += 1
    render.stdout().print(table)
    render.stdout().print(f"{count} profile(s)")
    render.summary(run)


@app.command("list")
@guarded
@fleet_options(changes=False)
def list_profiles(
    *,
    common: Common,
) -> None:
    """Every device's renewal profiles."""
    _, devices = select(common)
    run = execute(RenewalList(), devices, common)
    finish(run, common, table=_table)


@app.command("set")
@guarded
@fleet_options(changes=True)
def set_profile(
    ca_fingerprint: str = typer.Option(..., "--ca-fingerprint",
                                       help="Fingerprint of the CA whose certificates renew."),
    url: str = typer.Option(..., "--url", help="The SCEP server URL."),
    challenge: str | None = typer.Option(None, "--challenge", help="Reference to the challenge."),
    *,
    common: Common,
) -> None:
    """Set a renewal profile on each device."""
    secret = parse_secret_ref(challenge).resolve() if challenge else None
    _, devices = select(common)
    run = execute(RenewalSet(_fingerprint(ca_fingerprint), url, secret), devices, common)
    finish(run, common)


@app.command("delete")
@guarded
@fleet_options(changes=True)
def delete_profile(
    ca_fingerprint: str = typer.Option(..., "--ca-fingerprint"),
    *,
    common: Common,
) -> None:
    """Delete the renewal profile for a CA from each device."""
    _, devices = select(common)
    run = execute(RenewalDelete(_fingerprint(ca_fingerprint)), devices, common)
    finish(run, common)
