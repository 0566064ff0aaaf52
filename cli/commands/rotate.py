"""certfleet rotate — key → CSR → sign → push → activate → verify → clean up, where due."""

from __future__ import annotations

from pathlib import Path

import typer

from certfleet.fleet.durations import parse_duration
from certfleet.fleet.pki.signers.factory import SIGNERS, SignerSpec, parse_command
from certfleet.fleet.plans.install import parse_purposes
from certfleet.fleet.plans.rotate import DEFAULT_JOURNAL_PASSPHRASE, Rotate

from ..options import Common, fleet_options
from ..runtime import execute, finish, guarded, select


@guarded
@fleet_options(changes=True)
def rotate(
    purpose: str = typer.Option(..., "--purpose", help="Comma list: HTTPS, SIP, 802.1X, Audit, …"),
    signer: str = typer.Option(..., "--signer", help=f"One of {', '.join(SIGNERS)}."),
    renew_before: str = typer.Option(
        "30d", "--renew-before", help="Rotate certificates expiring within this (e.g. 30d)."
    ),
    force: bool = typer.Option(False, "--force", help="Rotate even where not due."),
    override_profile: bool = typer.Option(
        False, "--override-profile",
        help="Rotate even certificates a device renews itself under a SCEP profile.",
    ),
    days: int = typer.Option(365, "--days", min=1, help="Validity asked of the signer."),
    ca_dir: Path | None = typer.Option(None, "--ca-dir", help="local-ca: the CA folder."),
    ca_passphrase: str | None = typer.Option(
        "env:CERTFLEET_CA_PASSPHRASE", "--ca-passphrase",
        help="local-ca: reference to the CA key passphrase (env:, keyring:, file:).",
    ),
    outbox: Path | None = typer.Option(None, "--outbox", help="files: where CSRs are written."),
    inbox: Path | None = typer.Option(None, "--inbox", help="files: where signed certs are found."),
    sign_command: str | None = typer.Option(
        None, "--sign-command", help="command: program + args; CSR on stdin, PEM chain on stdout."
    ),
    command_timeout: float = typer.Option(60.0, "--command-timeout", min=1.0),
    scep_url: str | None = typer.Option(None, "--scep-url", help="scep: the SCEP server URL."),
    scep_ca_fingerprint: str | None = typer.Option(
        None, "--scep-ca-fingerprint", help="scep: SHA-256 (or SHA-1) of the SCEP CA certificate."
    ),
    scep_challenge: str | None = typer.Option(
        None, "--scep-challenge", help="scep: reference to the challenge password."
    ),
    journal_passphrase_ref: str = typer.Option(
        DEFAULT_JOURNAL_PASSPHRASE, "--journal-passphrase",
        help="Reference to the passphrase that encrypts new keys in the journal.",
    ),
    *,
    common: Common,
) -> None:
    """Rotate the certificates for --purpose on every device where they are due."""
    spec = SignerSpec(
        kind=signer,
        days=days,
        ca_dir=str(ca_dir.resolve()) if ca_dir else None,
        ca_passphrase=ca_passphrase if signer == "local-ca" else None,
        outbox=str(outbox.resolve()) if outbox else None,
        inbox=str(inbox.resolve()) if inbox else None,
        command=parse_command(sign_command) if sign_command else (),
        command_timeout=command_timeout,
        scep_url=scep_url,
        scep_ca_fingerprint=scep_ca_fingerprint,
        scep_challenge=scep_challenge,
    )
    purposes, renew = parse_purposes(purpose), parse_duration(renew_before)
    spec.validate()
    _, devices = select(common)
    plan = Rotate(purposes=purposes, signer=spec, journal_passphrase=journal_passphrase_ref,
                  renew_before=renew, force=force, override_profile=override_profile)
    finish(execute(plan, devices, common), common)
