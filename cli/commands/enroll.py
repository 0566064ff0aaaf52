"""certfleet enroll --scep URL — on-device SCEP enrollment across the fleet."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Callable, Sequence

import typer

from cli.commands.rotate import parse_purposes
from cli.options import Common, fleet_options
from cli.runtime import execute, finish, guarded, select
from fleet.durations import parse_duration
from fleet.errors import InputError, ScepError, SecretError
from fleet.inventory import Device
from fleet.pki.signers.factory import check_scep_options
from fleet.plans.enroll import Enroll, ScepTarget, scep_target
from fleet.secrets import Secret, parse_secret_ref, redact, register_secret


def env_name(device: Device) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", device.name).upper()


def check_challenges(reference: str | None, devices: Sequence[Device]) -> None:
    """Before any device is contacted: ``--challenge`` resolves for every selected device
    (the values are read again just in time; a command's one-time challenges are not asked
    for here)."""
    if not reference:
        return
    for device in devices:
        ref = reference.replace("{name}", device.name).replace("{NAME}", env_name(device))
        try:
            parse_secret_ref(ref).resolve()
        except InputError as exc:
            raise InputError(f"--challenge for {device.name}: {exc}") from None


def challenge_source(
    reference: str | None, command: str | None, timeout: float = 30.0
) -> Callable[[Device], Secret | None]:
    """Per device, just in time: a reference with ``{name}`` / ``{NAME}`` in it (e.g.
    ``env:SCEP_CHALLENGE_{NAME}``), or a command that prints a one-time password."""
    if reference and command:
        raise InputError("give --challenge or --challenge-command, not both")
    if reference:
        try:
            parse_secret_ref(reference.replace("{name}", "x").replace("{NAME}", "X"))
        except InputError as exc:
            raise InputError(f"--challenge: {exc}") from None

        def from_reference(device: Device) -> Secret:
            ref = reference.replace("{name}", device.name).replace("{NAME}", env_name(device))
            return parse_secret_ref(ref).resolve()

        return from_reference
    if command:
        argv = shlex.split(command)

        def from_command(device: Device) -> Secret:
            try:
                done = subprocess.run(
                    argv, capture_output=True, text=True, timeout=timeout, check=False,
                    env={**os.environ, "CERTFLEET_DEVICE": device.name,
                         "CERTFLEET_HOST": device.host or ""},
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise SecretError(f"--challenge-command failed for {device.name}: {exc}") from exc
            value = done.stdout.strip().splitlines()[0] if done.stdout.strip() else ""
            if value:
                register_secret(value)
            if done.returncode != 0 or not value:
                raise SecretError(
                    f"--challenge-command gave no challenge for {device.name} (exit "
                    f"{done.returncode}): {redact(done.stderr.strip()[-200:])}"
                )
            return Secret(value)

        return from_command
    return lambda device: None


async def find_scep_target(url: str, fingerprint: str) -> ScepTarget:
    """Ask the SCEP server for its CA (to push it, and to check the fingerprint)."""
    from fleet.pki.scep import ScepClient

    client = ScepClient(url)
    try:
        info = await client.get_ca()
    except ScepError as exc:
        return ScepTarget(url=url, ca=None,
                          problem=f"{exc.message}; nothing was changed on the device")
    finally:
        await client.aclose()
    return scep_target(url, fingerprint, info.certs)


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
    source = challenge_source(challenge, challenge_command)
    _, devices = select(common)
    check_challenges(challenge, devices)
    plan = Enroll(target=ScepTarget(url=scep, ca=None), purposes=parse_purposes(purpose),
                  challenge=source, renewal_profile=renewal_profile,
                  renew_before=parse_duration(renew_before), force=force, reboot=reboot,
                  reboot_timeout=max(30.0, common.device_timeout - 30.0))

    async def before() -> None:
        plan.target = await find_scep_target(scep, ca_fingerprint)

    run = execute(plan, devices, common, before=before,
                  journal_args={"scep": scep, "purposes": list(plan.purposes)})
    finish(run, common)
