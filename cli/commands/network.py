"""certfleet dot1x / certfleet wifi — wired 802.1X and Wi-Fi EAP-TLS, with a no-lockout guard."""

from __future__ import annotations

from collections.abc import Callable

import typer

from cli import render
from cli.options import (
    Common,
    DryRunOpt,
    InventoryOpt,
    JournalOpt,
    LimitOpt,
    MaxFailOpt,
    MaxUnreachableOpt,
    OutputFormat,
    OutputOpt,
    ParallelOpt,
    TimeoutOpt,
    WaveOpt,
)
from cli.runtime import execute, finish, guarded, select
from fleet.errors import InputError
from fleet.inventory import Device
from fleet.plans.network import Dot1x, Wifi
from fleet.runner import DEFAULT_PARALLEL

_PLACEHOLDERS = ("{name}", "{host}")


def identity_template(text: str) -> Callable[[Device], str]:
    probe = text
    for placeholder in _PLACEHOLDERS:
        probe = probe.replace(placeholder, "")
    if "{" in probe or "}" in probe:
        raise InputError(f"--identity {text!r}: only {', '.join(_PLACEHOLDERS)} may be used")
    return lambda d: text.replace("{name}", d.name).replace("{host}", d.host or "")


@guarded
def dot1x(
    identity: str = typer.Option("{name}", "--identity", help="EAP identity ({name}, {host})."),
    tls_verify: bool = typer.Option(True, "--tls-verify/--no-tls-verify",
                                    help="Verify the RADIUS server against the CA list."),
    force: bool = typer.Option(False, "--force", help="Skip the no-lockout guard (dangerous)."),
    inventory: InventoryOpt = None,
    limit: LimitOpt = None,
    dry_run: DryRunOpt = False,
    parallel: ParallelOpt = DEFAULT_PARALLEL,
    output: OutputOpt = OutputFormat.table,
    device_timeout: TimeoutOpt = 300.0,
    journal: JournalOpt = None,
    wave: WaveOpt = None,
    max_fail: MaxFailOpt = None,
    max_unreachable: MaxUnreachableOpt = None,
) -> None:
    """Turn on wired 802.1X EAP-TLS (Mode last); refuse devices it would strand."""
    if force:
        render.warning("--force: devices without an 802.1X certificate or CA may lose the network")
    common = Common(inventory, limit, parallel, output, dry_run, device_timeout, journal,
                    wave, max_fail, max_unreachable)
    _, devices = select(common)
    run = execute(Dot1x(identity=identity_template(identity), tls_verify=tls_verify,
                        force=force), devices, common)
    finish(run, common)


@guarded
def wifi(
    ssid: str = typer.Option(..., "--ssid", help="The Wi-Fi network."),
    identity: str = typer.Option("{name}", "--identity", help="EAP identity ({name}, {host})."),
    allow_missing_ca: bool = typer.Option(
        False, "--allow-missing-ca",
        help="Let the device join without validating the server (not recommended).",
    ),
    force: bool = typer.Option(False, "--force", help="Skip the no-lockout guard."),
    inventory: InventoryOpt = None,
    limit: LimitOpt = None,
    dry_run: DryRunOpt = False,
    parallel: ParallelOpt = DEFAULT_PARALLEL,
    output: OutputOpt = OutputFormat.table,
    device_timeout: TimeoutOpt = 300.0,
    journal: JournalOpt = None,
    wave: WaveOpt = None,
    max_fail: MaxFailOpt = None,
    max_unreachable: MaxUnreachableOpt = None,
) -> None:
    """Configure Wi-Fi EAP-TLS with AllowMissingCA False (unless --allow-missing-ca)."""
    if allow_missing_ca:
        render.warning("--allow-missing-ca: devices will NOT validate the Wi-Fi server's "
                       "certificate")
    common = Common(inventory, limit, parallel, output, dry_run, device_timeout, journal,
                    wave, max_fail, max_unreachable)
    _, devices = select(common)
    run = execute(Wifi(ssid=ssid, identity=identity_template(identity),
                       allow_missing_ca=allow_missing_ca, force=force), devices, common)
    finish(run, common)
