"""certfleet enroll --scep URL — on-device SCEP enrollment across the fleet."""

from __future__ import annotations

import typer

from certfleet.fleet.challenges import ChallengeSource
from certfleet.fleet.durations import parse_duration
from certfleet.fleet.pki.signers.factory import check_scep_options
from certfleet.fleet.plans.enroll import Enroll, ScepServer
from certfleet.fleet.plans.install import parse_purposes

from ..options import Common, fleet_options
from ..runtime import execute, finish, guarded, select


@guarded
@fleet_options(changes=True)
def enroll(
    scep: str = typer.Option(..., "--scep", help="The SCEP server URL the devices enroll with."),
    ca_fingerprint: str = typer.Option(
        ..., "--ca-fingerprint", help="SHA-256 (or SHA-1) of the SCEP CA certificate."
    ),
    challenge: str | None = typer.Option(
        None, "--challenge",
        help="Reference to the challenge (env:, keyring:, file:); {name}/{NAME} per device.",
    ),
    challenge_command: str | None = typer.Option(
        None, "--challenge-command",
        help="Program that prints a one-time challenge; gets CERTFLEET_DEVICE.",
    ),
    purpose: str = typer.Option("802.1X", "--purpose", help="Purposes to activate it for."),
    renewal_profile: bool = typer.Option(
        False, "--renewal-profile", help="Also set the device's SCEP renewal profile."
    ),
    renew_before: str = typer.Option("30d", "--renew-before"),
    force: bool = typer.Option(False, "--force", help="Enroll even where not due."),
    reboot: bool = typer.Option(
        False, "--reboot",
        help="Reboot each newly enrolled device and wait until it is back (use --wave).",
    ),
    *,
    common: Common,
) -> None:
    """Each device enrolls by SCEP with its own key; certfleet adds the CA, activates, verifies."""
    check_scep_options(scep, ca_fingerprint, url_option="--scep",
                       fingerprint_option="--ca-fingerprint")
    source = ChallengeSource(challenge, challenge_command)
    _, devices = select(common)
    plan = Enroll(scep=ScepServer(scep, ca_fingerprint), purposes=parse_purposes(purpose),
                  challenge=source, renewal_profile=renewal_profile,
                  renew_before=parse_duration(renew_before), force=force, reboot=reboot,
                  reboot_timeout=max(30.0, common.device_timeout - 30.0))
    run = execute(plan, devices, common,
                  journal_args={"scep": scep, "purposes": list(plan.purposes)})
    finish(run, common)
