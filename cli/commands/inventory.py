"""certfleet inventory list|check|import-webex."""

from __future__ import annotations

import typer

from certfleet.fleet.errors import InventoryError, SecretError
from certfleet.fleet.inventory import load_inventory
from certfleet.fleet.runner import resolve_secrets

from .. import render
from ..options import Common, InventoryOpt, LimitOpt, OutputFormat, OutputOpt, session_of
from ..runtime import guarded, inventory_path, recorded_firmware, select, uses_recorded

app = typer.Typer(help="Show and validate the inventory.", no_args_is_help=True)


@app.command("list")
@guarded
def list_devices(
    ctx: typer.Context,
    inventory: InventoryOpt = None,
    limit: LimitOpt = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Show the devices a command with the same --limit would act on, with the RoomOS release
    and product certfleet last read from each (run `certfleet status` to refresh them)."""
    common = Common(inventory=inventory, limit=limit, session=session_of(ctx))
    inv, devices = select(common)
    known = recorded_firmware(common)
    if output is OutputFormat.json:
        render.emit_json(render.device_documents(inv, devices, known))
    else:
        render.device_table(devices, known)


@app.command("check")
@guarded
def check(
    ctx: typer.Context,
    inventory: InventoryOpt = None,
    limit: LimitOpt = None,
    secrets: bool = typer.Option(
        True, "--secrets/--no-secrets", help="Also check that every secret reference resolves."
    ),
) -> None:
    """Validate the inventory: every problem with its file, line and key. Exit 2 on any."""
    state = session_of(ctx)
    path = inventory_path(inventory, state)
    try:
        inv = load_inventory(path)
    except InventoryError as exc:
        render.error(f"{path}: {len(exc.problems)} problem(s)")
        for problem in exc.problems:
            render.problem(str(problem))
        raise typer.Exit(2) from None
    devices = inv.select(limit, known=recorded_firmware(Common(inventory=inventory, limit=limit,
                                                            session=state))
                         if uses_recorded(limit) else None)
    for line in inv.warnings:
        render.warning(line)
    if secrets:
        try:
            resolve_secrets(devices)
        except SecretError as exc:
            render.error(str(exc))
            raise typer.Exit(2) from None
    render.stdout().print(
        f"{path}: OK — {len(inv.devices)} device(s), {len(inv.groups)} group(s)"
        + (f", {len(devices)} selected" if limit else "")
        + ("; secrets resolve" if secrets else ""),
        soft_wrap=True,
    )

