"""certfleet push-cert — upload a signed certificate + key, activate it, verify it."""

from __future__ import annotations

from pathlib import Path

import typer

from certfleet.fleet.errors import InputError
from certfleet.fleet.pki.cert_files import certificate_source, load_anchors
from certfleet.fleet.plans.install import parse_purposes
from certfleet.fleet.plans.push_cert import PushCert
from certfleet.fleet.secrets import parse_secret_ref

from ..options import Common, fleet_options
from ..runtime import execute, finish, guarded, select


@guarded
@fleet_options(changes=True)
def push_cert(
    purpose: str = typer.Option(..., "--purpose", help="Comma list: HTTPS, SIP, 802.1X, Audit, …"),
    cert: Path | None = typer.Option(
        None, "--cert", help="One PEM bundle (leaf first or not, chain, maybe the key) for all."
    ),
    key: Path | None = typer.Option(None, "--key", help="The private key of --cert."),
    cert_dir: Path | None = typer.Option(
        None, "--dir", help="Per device: DIR/<device>.pem (+ chain) and DIR/<device>.key.pem."
    ),
    ca_file: list[Path] | None = typer.Option(
        None, "--ca-file",
        help="CA certificate(s) the chain must verify to (HTTPS also uses the verify: CA file).",
    ),
    key_passphrase: str | None = typer.Option(
        None, "--key-passphrase", help="Reference to the key files' passphrase, if encrypted."
    ),
    *,
    common: Common,
) -> None:
    """Install a certificate for --purpose on each device (make-before-break)."""
    if (cert is None) == (cert_dir is None):
        raise InputError("give either --cert FILE (one certificate for all) or --dir DIR")
    passphrase = parse_secret_ref(key_passphrase).resolve() if key_passphrase else None
    _, devices = select(common)
    source = certificate_source(devices, cert=cert, key=key, folder=cert_dir,
                                passphrase=passphrase)  # all checked before any device
    anchors = load_anchors(ca_file or [])
    plan = PushCert(purposes=parse_purposes(purpose), source=source, anchors=anchors)
    run = execute(plan, devices, common, journal_args={"purposes": list(plan.purposes)})
    finish(run, common)
