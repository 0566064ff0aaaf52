"""certfleet demo — the whole story against a simulated fleet, with no set-up.

Every step runs the real command in-process, exactly as printed (`$ certfleet …`, absolute
paths, secrets as `file:` references), so each line can be copied into another shell while
the demo runs (`--keep` keeps its folder). The demo sets nothing in os.environ."""

from __future__ import annotations

import shlex
import shutil
import socket
import ssl
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from cryptography import x509
from rich.text import Text

from .. import render
from ..demo_setup import DemoFiles, prepare, scep_responder, simulated_fleet, trust_lab_ca
from ..options import Session


def command_line(args: list[str]) -> str:
    return "certfleet " + shlex.join(args)


def _run(args: list[str]) -> int:
    from ..main import app  # the real commands, exactly as a user would type them

    render.stdout().print(Text("$ " + command_line(args), style="bold cyan"), soft_wrap=True)
    command = typer.main.get_command(app)
    try:
        # the run is reported under these arguments, not the demo's own command line
        code = command.main(args=args, prog_name="certfleet", standalone_mode=False,
                            obj=Session(command_args=args))
    except SystemExit as exc:  # a verb that exits by itself (never the demo's whole process)
        code = exc.code if isinstance(exc.code, int) else 1
    return int(code or 0)


def _say(text: str) -> None:
    render.stdout().print(Text(text), soft_wrap=True)


def served_certificate(host: str, port: int, trust: Path) -> x509.Certificate:
    """The certificate a device presents in a fresh TLS handshake, verified against `trust`."""
    context = ssl.create_default_context(cafile=str(trust))
    context.check_hostname = False  # the sim's devices are all 127.0.0.1
    with socket.create_connection((host, port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=host) as tls:
        der = tls.getpeercert(binary_form=True)
    if der is None:
        raise ssl.SSLError("the device presented no certificate")
    return x509.load_der_x509_certificate(der)


def demo(
    devices: int = typer.Option(8, "--devices", "-n", min=4, max=200,
                                help="How many simulated devices."),
    keep: bool = typer.Option(False, "--keep",
                              help="Keep the demo's folder (inventory, journal, report)."),
) -> None:
    """Start a simulated fleet on 127.0.0.1 and walk through the whole story: push-ca, SCEP
    enrollment with a renewal profile, 802.1X, Wi-Fi, rotation, the cloud transport, an offline
    device, an HTML report and Prometheus metrics. Every command is printed as it runs."""
    workdir = Path(tempfile.mkdtemp(prefix="certfleet-demo-"))
    started = time.monotonic()
    try:
        failures = _story(workdir, devices)
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    render.stdout().print()
    render.heading(f"That was certfleet ({time.monotonic() - started:.0f} s). "
                   "Try it on your own simulated fleet: certfleet sim serve --help")
    if keep:
        _say(f"The demo's folder is kept: {workdir}")
    if failures:
        for failure in failures:
            render.error(f"the demo did not go as expected: {failure}")
        raise typer.Exit(1)


def _story(workdir: Path, devices: int) -> list[str]:
    render.heading("certfleet demo")
    _say(f"Starting {devices} simulated RoomOS devices on 127.0.0.1 (real HTTPS, real xAPI wire "
         f"format, real rate limits) and a simulated Webex cloud API, in {workdir} …")
    failures: list[str] = []
    with simulated_fleet(workdir, devices) as sim:
        files = prepare(workdir, sim.inventory_path, sim.ca_pem_path)
        _say(f"The demo's inventory is {files.inventory}: the simulator's, verifying devices "
             f"against {files.trust}, with a certificate template for rotation. Secrets are "
             f"files of mode 0600 in {files.folder / 'secrets'}, named by file: references.")

        def step(text: str, args: list[str], expected: int = 0) -> None:
            render.stdout().print()
            render.heading(text)
            code = _run(args)
            if code != expected:
                failures.append(f"{command_line(args)} exited {code}, expected {expected}")

        story = _Story(sim, files, step, failures)
        story.lab_ca()
        story.push_ca()
        story.offline_then_failed()
        story.enroll_dot1x_wifi()
        story.rotate()
        story.cloud()
        story.reporting()
    return failures


class _Story:
    def __init__(self, sim: Any, files: DemoFiles, step: Callable[..., None],
                 failures: list[str]) -> None:
        self.sim, self.files, self.step, self.failures = sim, files, step, failures
        self.inv = ["-i", str(files.inventory)]
        self.fleet = [*self.inv, *files.journal_opts]

    def lab_ca(self) -> None:
        f = self.files
        self.step("Set-up: a small local CA for the lab (rotation uses it later), its key "
                  "encrypted with a passphrase reference",
                  ["ca", "init", "--dir", str(f.lab_ca), "--cn", "Example Lab CA",
                   "--passphrase", f"file:{f.ca_passphrase}"])
        # before any command reads the trust file: certfleet keeps a process's TLS contexts
        trust_lab_ca(f)
        _say(f"\n(the lab CA is added to {f.trust}, so certfleet will trust the devices' HTTPS "
             "certificates once they are rotated to ones the lab CA signed)")

    def push_ca(self) -> None:
        f, step = self.files, self.step
        step("The inventory (TLS verified against the device CAs):",
             ["inventory", "list", *self.inv])
        step("Rehearse: read the real trust lists, show what would change, write nothing",
             ["push-ca", str(f.corp_root), *self.fleet, "--dry-run"])
        step("Push the corporate root CA to every device",
             ["push-ca", str(f.corp_root), *self.fleet])
        step("Run it again: it is idempotent, nothing to do",
             ["push-ca", str(f.corp_root), *self.fleet])

    def offline_then_failed(self) -> None:
        f, step = self.files, self.step
        unplugged = next(iter(self.sim.devices))
        self.sim.set_fault(unplugged, offline=True)
        _say(f"\n(the demo unplugs {unplugged}: roomsim refuses its connections)")
        step(f"Root CA rollover while {unplugged} is offline: the others finish (exit 1)",
             ["push-ca", str(f.corp_root), str(f.corp_root_next), *self.fleet], expected=1)
        self.sim.clear_faults(unplugged)
        _say(f"\n({unplugged} is plugged in again)")
        step(f"Re-run just the devices that failed or were unreachable: {unplugged}",
             ["push-ca", str(f.corp_root), str(f.corp_root_next), *self.fleet,
              "--limit", "@failed"])
        step("Retire the old root: --prune deletes every CA not listed (rehearsed first)",
             ["push-ca", str(f.corp_root_next), *self.fleet, "--prune", "--dry-run"])
        step("… and for real (--yes: no question asked)",
             ["push-ca", str(f.corp_root_next), *self.fleet, "--prune", "--yes"])

    def enroll_dot1x_wifi(self) -> None:
        f, step = self.files, self.step
        # Always roomsim's simulated responder, even where Debian's scepserver is installed:
        # scepserver 2.1.0 listens on every interface, and keeping it on loopback takes a
        # network namespace (root), which a demo run by any user after a pip install cannot
        # count on. The tests and the README's SCEP walkthrough use the real server.
        with scep_responder(f.scep_challenge) as scep:
            render.stdout().print()
            render.heading("SCEP: SIMULATED responder")
            _say(f"SCEP server: {scep.url}: roomsim's SIMULATED SCEP responder (a stand-in "
                 f"for your CA's SCEP service; certfleet's tests use Debian's real scepserver). "
                 f"Its CA's SHA-256: {scep.ca_sha256}; challenge in {f.scep_challenge}.")
            step("Each device enrolls by SCEP with its own key for 802.1X, and keeps a renewal "
                 "profile so it renews by itself (certfleet adds the SCEP CA first)",
                 ["enroll", *self.fleet, "--scep", scep.url, "--ca-fingerprint", scep.ca_sha256,
                  "--challenge", f"file:{f.scep_challenge}", "--purpose", "802.1X",
                  "--renewal-profile"])
            step("The devices' own renewal profiles", ["renewal", "list", *self.inv])
        step("Wired 802.1X with EAP-TLS (Mode written last, restored if it does not come up)",
             ["dot1x", *self.fleet, "--identity", "{name}"])
        step("Wi-Fi with EAP-TLS, the CA required (AllowMissingCA False)",
             ["wifi", *self.fleet, "--ssid", "corp-rooms"])

    def rotate(self) -> None:
        f, step = self.files, self.step
        rotate = ["rotate", *self.fleet, "--purpose", "HTTPS", "--signer", "local-ca",
                  "--ca-dir", str(f.lab_ca), "--ca-passphrase", f"file:{f.ca_passphrase}",
                  "--journal-passphrase", f"file:{f.journal_passphrase}"]
        step("Rotate every HTTPS certificate: key → CSR → sign → upload → activate → verify "
             "by a new TLS handshake → delete the old one",
             [*rotate, "--renew-before", "400d"])
        name, device = next(iter(self.sim.devices.items()))
        try:
            served = served_certificate("127.0.0.1", device.port, f.trust)
        except (OSError, ssl.SSLError) as exc:
            self.failures.append(f"TLS handshake with {name} failed: {exc}")
        else:
            issuer = served.issuer.rfc4514_string()
            _say(f"\nA fresh TLS handshake with {name} (127.0.0.1:{device.port}) now shows "
                 f"a certificate issued by {issuer}, valid until "
                 f"{served.not_valid_after_utc:%Y-%m-%d}.")
            if "Example Lab CA" not in issuer:
                self.failures.append(f"{name} does not serve the rotated certificate")
        step("Nightly: rotate only what is due within 30 days; each device says why not",
             [*rotate, "--renew-before", "30d"])

    def cloud(self) -> None:
        f, step, sim = self.files, self.step, self.sim
        step("Devices managed through the Webex cloud: import them from the (simulated) API",
             ["inventory", "import-webex", "--api-url", sim.cloud_url,
              "--token", f"file:{sim.state_dir / 'cloud-token'}",
              "--api-verify", f"ca:{sim.ca_pem_path}", "--tag", "board",
              "--out", str(f.webex_inventory)])
        step("Push the new root through the cloud transport (already there: ok)",
             ["push-ca", str(f.corp_root_next), "-i", str(f.webex_inventory),
              *f.journal_opts])

    def reporting(self) -> None:
        f, step = self.files, self.step
        step("An HTML report of the fleet's certificates and the last run",
             ["report", *self.fleet, "--html", str(f.report)])
        _say(f"(open {f.report} in a browser; `certfleet demo --keep` keeps the demo's folder)")
        first = next(iter(self.sim.devices))
        step(f"Monitoring: node_exporter textfile metrics (here for {first} only)",
             ["status", *self.fleet, "-o", "prometheus", "--limit", first])
        step("The run journal (new keys in it are encrypted)",
             ["runs", "list", *f.journal_opts])
