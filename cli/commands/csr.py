"""certfleet csr — a new key and CSR per device, made here (no device is contacted)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from certfleet.fleet.errors import InputError
from certfleet.fleet.pki.csr_batch import make_csrs
from certfleet.fleet.pki.keys import KEY_KINDS
from certfleet.fleet.secrets import Secret, parse_secret_ref

from .. import render, render_pki
from ..options import Common, InventoryOpt, LimitOpt, OutputFormat, OutputOpt, session_of
from ..runtime import guarded, select


@guarded
def csr(
    ctx: typer.Context,
    out: Annotated[
        Path,
        typer.Option("--out", help="Folder for DEVICE.key.pem and DEVICE.csr.pem.",
                     show_default=False),
    ],
    inventory: InventoryOpt = None,
    limit: LimitOpt = None,
    key: str | None = typer.Option(
        None, "--key",
        help=f"Key type for every device: {', '.join(KEY_KINDS)} "
        "(default: the inventory's certificate template).",
        show_default=False,
    ),
    passphrase: str | None = typer.Option(
        None, "--passphrase",
        help="Encrypt the key files with the passphrase at env:VAR, keyring:SERVICE/USER or "
        "file:PATH (never the passphrase itself).",
        show_default=False,
    ),
    force: bool = typer.Option(
        False, "--force", help="Replace key and CSR files that are already in --out."
    ),
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Generate a key (on all cores) and a CSR per device from the inventory's certificate
    template. Local only: no device is contacted. Key files are mode 0600."""
    secret: Secret | None = None
    if passphrase is not None:
        try:
            secret = parse_secret_ref(passphrase).resolve_passphrase()
        except InputError as exc:
            raise InputError(f"--passphrase: {exc}") from None
    _, devices = select(Common(inventory=inventory, limit=limit, session=session_of(ctx)))
    rows = make_csrs(devices, out, key=key, passphrase=secret, force=force)
    if output is OutputFormat.json:
        render.emit_json(render_pki.csr_document(rows))
    else:
        render_pki.csr_table(rows)
    if secret is None:
        render.warning(
            f"the {len(rows)} key file(s) are not encrypted (mode 0600); "
            "give --passphrase to encrypt them"
        )
