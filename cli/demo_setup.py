"""What `certfleet demo` sets up before its story: the simulated fleet (with the Webex cloud
API), a simulated SCEP responder, and in the demo's folder the files every printed command
uses — an inventory, CA files, and secrets in mode-0600 files (the demo never writes to
os.environ: every secret is a `file:` reference on the command line)."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from certfleet.fleet.pki.keys import write_atomic
from certfleet.fleet.pki.local_ca import create_ca

#: The demo's simulated firmware (roomsim's `--firmware`): "mix" gives the fleet old and new
#: releases and products (see roomsim/firmware.py), so the demo also shows devices left alone,
#: with the release they would need, where their release cannot do a verb.
SIM_FIRMWARE: str | None = "mix"


@dataclass(frozen=True)
class DemoFiles:
    """Absolute paths of everything the demo's commands name."""

    folder: Path
    inventory: Path  # the fleet, verified against device-cas.pem, with a certificate template
    trust: Path  # the device CAs certfleet trusts: the sim's, and the lab CA once made
    journal: Path
    corp_root: Path
    corp_root_next: Path
    ca_passphrase: Path
    journal_passphrase: Path
    scep_challenge: Path
    lab_ca: Path
    webex_inventory: Path
    report: Path

    @property
    def journal_opts(self) -> list[str]:
        return ["--journal", str(self.journal)]


def _secret_file(path: Path, value: str) -> None:
    write_atomic(path, (value + "\n").encode("ascii"), mode=0o600)


def prepare(folder: Path, sim_inventory: Path, sim_ca: Path) -> DemoFiles:
    files = DemoFiles(
        folder=folder,
        inventory=folder / "fleet.yaml",
        trust=folder / "device-cas.pem",
        journal=folder / "journal.sqlite",
        corp_root=folder / "corp-root.pem",
        corp_root_next=folder / "corp-root-2027.pem",
        ca_passphrase=folder / "secrets" / "ca-passphrase",
        journal_passphrase=folder / "secrets" / "journal-passphrase",
        scep_challenge=folder / "secrets" / "scep-challenge",
        lab_ca=folder / "lab-ca",
        webex_inventory=folder / "webex.yaml",
        report=folder / "fleet-report.html",
    )
    (folder / "secrets").mkdir(mode=0o700)
    for path in (files.ca_passphrase, files.journal_passphrase, files.scep_challenge):
        _secret_file(path, secrets.token_urlsafe(24))
    files.corp_root.write_text(create_ca("Example Corp Room Root CA",
                                         organization="Example Corp").cert_pem)
    files.corp_root_next.write_text(create_ca("Example Corp Room Root CA 2027",
                                              organization="Example Corp").cert_pem)
    files.trust.write_text(sim_ca.read_text())
    data: dict[str, Any] = yaml.safe_load(sim_inventory.read_text())
    # verified against a file certfleet can extend with the lab CA before rotating HTTPS
    # (or it would lock itself out of devices whose certificate it just changed)
    data["defaults"]["verify"] = f"ca:{files.trust}"
    data["defaults"]["certificate"] = {
        "key": "ec-p256",
        "subject": {"O": "Example Corp", "C": "NO"},
        "san_dns": ["{name}.rooms.example.com"],
        "san_ip": ["{host}"],
    }
    files.inventory.write_text(yaml.safe_dump(data, sort_keys=False))
    return files


def trust_lab_ca(files: DemoFiles) -> None:
    """Add the lab CA to the device CAs certfleet verifies against."""
    files.trust.write_text(files.trust.read_text() + (files.lab_ca / "ca.pem").read_text())


@contextlib.contextmanager
def simulated_fleet(folder: Path, devices: int) -> Iterator[Any]:
    """The simulated fleet on loopback: each device's local xAPI, and the Webex cloud API."""
    from certfleet.roomsim import SimFleetThread

    options: dict[str, Any] = {"cloud": True}
    if SIM_FIRMWARE is not None:
        options["firmware"] = SIM_FIRMWARE
    with SimFleetThread(folder / "sim", devices=devices, **options) as sim:
        yield sim


def scep_responder(challenge_file: Path) -> Any:
    from certfleet.roomsim.scep_responder import SimScepResponder

    return SimScepResponder(challenge=challenge_file.read_text().strip())
