"""certfleet inventory import-webex — write or merge an inventory from the Webex device list."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer

from certfleet.fleet.cloud_import import (
    DEFAULT_PAGE_SIZE,
    DEFAULT_TOKEN_REF,
)
from certfleet.fleet.errors import DeviceError, InputError
from certfleet.fleet.inventory import (
    DEFAULT_API_RATE_PER_MINUTE,
    DEFAULT_API_URL,
    MAX_API_RATE_PER_MINUTE,
)
from certfleet.fleet.webex_import import ImportRequest
from certfleet.fleet.webex_import import import_webex as run_import

from .. import render
from ..options import Session, session_of
from ..runtime import DEFAULT_INVENTORY, guarded, inventory_path

__all__ = ["ImportOutput", "import_webex"]


class ImportOutput(StrEnum):
    table = "table"
    json = "json"


def _target(out: Path | None, state: Session) -> Path:
    if out is not None:
        return out
    try:
        return inventory_path(None, state)
    except InputError:
        return DEFAULT_INVENTORY


@guarded
def import_webex(
    ctx: typer.Context,
    tag: list[str] | None = typer.Option(
        None, "--tag", help="Only devices with this Webex tag (repeat: all of them).",
        show_default=False,
    ),
    product: str | None = typer.Option(
        None, "--product", help="Only this product, e.g. 'Room Bar' (a loose match).",
        show_default=False,
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Inventory file to write or merge into (default: the inventory: "
        "-i, CERTFLEET_INVENTORY or ./inventory.yaml).", show_default=False,
    ),
    token: str | None = typer.Option(
        None, "--token", help=f"Secret reference of the Webex access token, written to the "
        f"inventory (default: the file's, else {DEFAULT_TOKEN_REF}).", show_default=False,
    ),
    api_url: str | None = typer.Option(
        None, "--api-url", help=f"Webex API base URL (default: the file's, else "
        f"{DEFAULT_API_URL}).", show_default=False,
    ),
    api_verify: str | None = typer.Option(
        None, "--api-verify", help="How to verify the API's TLS: ca:PATH, pin:sha256:HEX, "
        "system (default) or insecure; written to the inventory as api_verify.",
        show_default=False,
    ),
    api_rate: float | None = typer.Option(
        None, "--api-rate", min=0.1, max=MAX_API_RATE_PER_MINUTE,
        help="Requests a minute certfleet may send with this token (default: the file's, "
        f"else {DEFAULT_API_RATE_PER_MINUTE:g}, under Webex's ~300); written as "
        "api_rate_per_minute.", show_default=False,
    ),
    page_size: int = typer.Option(
        DEFAULT_PAGE_SIZE, "--page-size", min=1, max=1000,
        help="Devices asked for per page of the list.",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="List and merge, show the counts, write nothing."
    ),
    output: ImportOutput = typer.Option(
        ImportOutput.table, "--output", "-o", help="table for people, json for scripts."
    ),
) -> None:
    """Add the Webex devices (transport: cloud) to an inventory; re-run to pick up new ones.

    Devices already in the file (same device_id) keep their names and keys; everything
    hand-written in the file is kept.
    """
    request = ImportRequest(
        path=_target(out, session_of(ctx)), tags=tuple(tag or ()), product=product,
        token=token, api_url=api_url, api_verify=api_verify, api_rate=api_rate,
        page_size=page_size, dry_run=dry_run,
    )
    try:
        done = run_import(request)
    except DeviceError as exc:
        render.error(f"listing the Webex devices failed: {exc}")
        raise typer.Exit(1) from None
    path, summary, listing = done.path, done.summary, done.listing
    if output is ImportOutput.json:
        render.emit_json({"file": str(path), "written": done.written, **summary.to_dict()})
        return
    verb = "would write" if dry_run else "wrote"
    line = (f"{verb} {path}: {len(summary.added)} added, {len(summary.updated)} updated, "
            f"{summary.kept} kept ({len(listing.devices)} device(s) from Webex in "
            f"{listing.pages} page(s); cloud settings in {summary.settings_in})")
    render.stdout().print(line, soft_wrap=True, markup=False, highlight=False)
    if listing.no_xapi:
        render.note(f"left out {listing.no_xapi} device(s) without the xAPI "
                    "(phones, accessories)")
    if summary.without_permission:
        render.warning(f"{summary.without_permission} device(s) grant this token no xAPI "
                       "access: give the workspace API access in Control Hub")
    if summary.skipped_ids:
        render.warning(f"left out {len(summary.skipped_ids)} device(s) whose id has spaces")
