"""certfleet dot1x / certfleet wifi — wired 802.1X and Wi-Fi EAP-TLS, with a no-lockout guard."""

from __future__ import annotations

from collections.abc import Callable

import typer

from certfleet.fleet.errors import InputError
from certfleet.fleet.inventory import Device
from certfleet.fleet.plans.network import Dot1x, Wifi

from .. import render
from ..options import Common, fleet_options
from ..runtime import execute, finish, guarded, select

_PLACEHOLDERS = ("{name}", "{host}")


def identity_template(text: str) -> Callable[[Device], str]:
    probe = text
    for placeholder in _PLACEHOLDERS:
        probe = probe.replace(placeholder, "")
    if "{" in probe or "}" in probe:
        raise InputError(f"--identity {text!r}: only {', '.join(_PLACEHOLDERS)} may be used")
    return lambda d: text.replace("{name}", d.name).replace("{host}", d.host or "")


@guarded
@fleet_options(changes=True)
def dot1x(
    identity: str = typer.Option("{name}", "--identity", help="EAP identity ({name}, {host})."),
    tls_verify: bool = typer.Option(True, "--tls-verify/--no-tls-verify",
                                    help="Verify the RADIUS server against the CA list."),
    force: bool = typer.Option(False, "--force", help="Skip the no-lockout guard (dangerous)."),
    *,
    common: Common,
) -> None:
    """Turn on wired 802.1X EAP-TLS (Mode last); refuse devices it would strand."""
    if force:
        render.warning("--force: devices without an 802.1X certificate or CA may lose the network")
    _, devices = select(common)
    run = execute(Dot1x(identity=identity_template(identity), tls_verify=tls_verify,
                        force=force), devices, common)
    finish(run, common)


@guarded
@fleet_options(changes=True)
def wifi(
    ssid: str = typer.Option(..., "--ssid", help="The Wi-Fi network."),
    identity: str = typer.Option("{name}", "--identity", help="EAP identity ({name}, {host})."),
    allow_missing_ca: bool = typer.Option(
        False, "--allow-missing-ca",
        help="Let the device join without validating the server (not recommended).",
    ),
    force: bool = typer.Option(False, "--force", help="Skip the no-lockout guard."),
    *,
    common: Common,
) -> None:
    """Configure Wi-Fi EAP-TLS with AllowMissingCA False (unless --allow-missing-ca)."""
    if allow_missing_ca:
        render.warning("--allow-missing-ca: devices will NOT validate the Wi-Fi server's "
                       "certificate")
    _, devices = select(common)
    run = execute(Wifi(ssid=ssid, identity=identity_template(identity),
                       allow_missing_ca=allow_missing_ca, force=force), devices, common)
    finish(run, common)
