"""certfleet push-ca — make each device's trust list contain these CAs."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import typer

from certfleet.fleet.errors import InputError
from certfleet.fleet.pki.certs import load_ca_files
from certfleet.fleet.plans.push_ca import PushCa

from .. import render
from ..options import Common, fleet_options
from ..runtime import execute, finish, guarded, select


@guarded
@fleet_options(changes=True)
def push_ca(
    ca_files: list[Path] = typer.Argument(..., help="PEM files with the CA certificates.",
                                          show_default=False),
    prune: bool = typer.Option(
        False, "--prune", help="Also delete CAs on the device that are not in these files."
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before --prune deletes."),
    sync_to_peripherals: str | None = typer.Option(
        None, "--sync-to-peripherals",
        help="on|off: also send the device's CAs to its Room Navigators (needs a reboot).",
    ),
    *,
    common: Common,
) -> None:
    """Add the CAs each device lacks (idempotent by fingerprint); --prune removes the rest."""
    cas = load_ca_files(ca_files)  # every file checked before any device is touched
    _, devices = select(common)
    sync: bool | None = None
    if sync_to_peripherals is not None:
        if sync_to_peripherals.lower() not in ("on", "off"):
            raise InputError("--sync-to-peripherals takes on or off")
        sync = sync_to_peripherals.lower() == "on"
    plan = PushCa(cas=cas, prune=prune, sync_to_peripherals=sync)
    if prune and not common.dry_run and not yes:
        if not sys.stdin.isatty():
            raise InputError(
                "--prune deletes CAs from devices: give --yes to confirm when not interactive "
                "(or --dry-run to see what it would delete)"
            )
        rehearsal = execute(plan, devices, dataclasses.replace(common, dry_run=True))
        render.run_table(rehearsal, title="what push-ca --prune would do")
        deletions = sum(
            1 for r in rehearsal.devices for c in r.changes if c.action == "ca.delete"
        )
        if deletions and not typer.confirm(
            f"Delete {deletions} CA certificate(s) across the fleet?", default=False
        ):
            render.note("nothing was changed")
            raise typer.Exit(0)
    run = execute(plan, devices, common, journal_args={"ca_files": [str(p) for p in ca_files],
                                                        "prune": prune})
    finish(run, common)
