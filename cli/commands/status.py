"""certfleet status — per device x certificate: used for, subject, issuer, expiry, days left."""

from __future__ import annotations

import typer

from certfleet.fleet.durations import format_duration, parse_duration
from certfleet.fleet.plans.status import Status, expiring_certificates
from certfleet.fleet.results import EXIT_FAILED

from .. import render
from ..options import Common, fleet_options
from ..runtime import execute, finish, guarded, select


@guarded
@fleet_options(changes=False)
def status(
    expiring_within: str | None = typer.Option(
        None,
        "--expiring-within",
        help="e.g. 30d: list certificates in use (and CAs) that expire within it; exit 1 if any.",
        show_default=False,
    ),
    *,
    common: Common,
) -> None:
    """Read every selected device's certificates and trust list (changes nothing)."""
    within = parse_duration(expiring_within) if expiring_within else None
    _, devices = select(common)
    run = execute(Status(), devices, common)
    expiring = expiring_certificates(run, within) if within is not None else None
    code = run.exit_code()
    if expiring:
        code = max(code, EXIT_FAILED)
    if within is not None:
        run.notes.append(
            f"{len(expiring or [])} certificate(s) expire within {format_duration(within)}"
        )
    extra = None
    if within is not None:
        extra = {
            "expiring_within": format_duration(within),
            "expiring": [
                {
                    "device": e.device,
                    "kind": e.kind,
                    "fingerprint": e.fingerprint,
                    "subject": e.subject,
                    "purposes": list(e.purposes),
                    "days_left": round(e.days_left, 1),
                }
                for e in expiring or []
            ],
        }
    finish(run, common, table=lambda r: render.status_table(r, expiring), exit_code=code,
           extra=extra)
