"""certfleet demo — the whole story against a simulated fleet, with no set-up."""

from __future__ import annotations

import shlex
import tempfile
from pathlib import Path

import typer
from rich.text import Text

from cli import render, runtime


def _run(args: list[str]) -> int:
    from cli.main import app  # the real commands, exactly as a user would type them

    render.stdout().print()
    render.stdout().print(Text("$ certfleet " + " ".join(shlex.quote(a) for a in args),
                               style="bold cyan"))
    command = typer.main.get_command(app)
    runtime.set_command_args(args)
    try:
        code = command.main(args=args, prog_name="certfleet", standalone_mode=False)
    finally:
        runtime.set_command_args(None)
    return int(code or 0)


def _rotation_inventory(inventory: Path, sim_ca: Path, lab: Path, workdir: Path) -> str:
    """The sim's inventory, trusting the lab CA too (or certfleet would lock itself out of
    the devices after their HTTPS certificates change), with a certificate template."""
    import yaml

    trust = workdir / "device-cas.pem"
    data = yaml.safe_load(inventory.read_text())
    data["defaults"]["verify"] = f"ca:{trust}"
    data["defaults"]["certificate"] = {
        "key": "ec-p256",
        "subject": {"O": "Example Corp", "C": "NO"},
        "san_dns": ["{name}.rooms.example.com"],
        "san_ip": ["{host}"],
    }
    path = workdir / "rotate.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    trust.write_text(sim_ca.read_text() + (lab / "ca.pem").read_text())
    return str(path)


def demo(
    devices: int = typer.Option(6, "--devices", "-n", min=2, max=200,
                                help="How many simulated devices."),
    keep: bool = typer.Option(False, "--keep", help="Keep the simulated fleet's state folder."),
) -> None:
    """Start a simulated fleet on 127.0.0.1 and walk through status, push-ca and rotate."""
    workdir = Path(tempfile.mkdtemp(prefix="certfleet-demo-"))
    # The demo keeps to itself: its own journal, and passphrases made up for this run only.
    import os
    import secrets as _secrets

    saved = {k: os.environ.get(k) for k in ("CERTFLEET_JOURNAL", "CERTFLEET_CA_PASSPHRASE",
                                            "CERTFLEET_JOURNAL_PASSPHRASE")}
    os.environ["CERTFLEET_JOURNAL"] = str(workdir / "journal.sqlite")
    os.environ["CERTFLEET_CA_PASSPHRASE"] = _secrets.token_urlsafe(16)
    os.environ["CERTFLEET_JOURNAL_PASSPHRASE"] = _secrets.token_urlsafe(16)
    try:
        _story(workdir, devices)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if not keep:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)


def _story(workdir: Path, devices: int) -> None:
    from fleet.pki.local_ca import create_ca
    from roomsim import SimFleetThread

    render.heading("certfleet demo")
    render.stdout().print(
        f"Starting {devices} simulated RoomOS devices on 127.0.0.1 (real HTTPS, real xAPI "
        f"wire format, real rate limits) with their state in {workdir} …"
    )
    with SimFleetThread(workdir / "sim", devices=devices) as sim:
        inv = str(sim.inventory_path)
        root = create_ca("Example Corp Room Root CA", organization="Example Corp")
        ca_file = workdir / "corp-root.pem"
        ca_file.write_text(root.cert_pem)
        new_root = create_ca("Example Corp Room Root CA 2027", organization="Example Corp")
        new_file = workdir / "corp-root-2027.pem"
        new_file.write_text(new_root.cert_pem)
        names = list(sim.devices)
        unplugged = names[0]

        def step(text: str, args: list[str], expected: int = 0) -> None:
            render.stdout().print()
            render.heading(text)
            code = _run(args)
            if code != expected:
                failures.append(f"certfleet {' '.join(args)} exited {code}, expected {expected}")

        failures: list[str] = []
        step("The inventory the simulator wrote (TLS verified against its device CA):",
             ["inventory", "list", "-i", inv])
        step("What is on every device now:", ["status", "-i", inv])
        step("Rehearse: read the real trust lists, show what would change, write nothing:",
             ["push-ca", str(ca_file), "-i", inv, "--dry-run"])
        step("Push the corporate root CA to every device:", ["push-ca", str(ca_file), "-i", inv])
        step("Run it again: it is idempotent, nothing to do:", ["push-ca", str(ca_file), "-i", inv])
        step("Monitoring: anything in use expiring within 30 days? (exit 1 if so)",
             ["status", "-i", inv, "--limit", "tag:board,group:oslo", "--expiring-within", "30d"])

        sim.set_fault(unplugged, offline=True)
        step(f"Root CA rollover while {unplugged} is unplugged: the others still finish (exit 1)",
             ["push-ca", str(ca_file), str(new_file), "-i", inv], expected=1)
        sim.clear_faults(unplugged)
        step(f"{unplugged} is back: re-run just the devices that failed",
             ["push-ca", str(ca_file), str(new_file), "-i", inv, "--limit", "@failed"])
        step("Retire the old root everywhere: --prune deletes what is not listed",
             ["push-ca", str(new_file), "-i", inv, "--prune", "--yes"])

        lab = workdir / "lab-ca"
        step("A small local CA for the lab (its key encrypted with a passphrase reference):",
             ["ca", "init", "--dir", str(lab), "--cn", "Example Lab CA"])
        rotating = _rotation_inventory(Path(inv), sim.ca_pem_path, lab, workdir)
        step("Rotate every HTTPS certificate: key → CSR → sign → upload → activate → verify "
             "by a new TLS handshake → delete the old one",
             ["rotate", "-i", rotating, "--purpose", "HTTPS", "--signer", "local-ca",
              "--ca-dir", str(lab), "--renew-before", "400d"])
        step("Nightly: rotate only what is due within 30 days — nothing is",
             ["rotate", "-i", rotating, "--purpose", "HTTPS", "--signer", "local-ca",
              "--ca-dir", str(lab), "--renew-before", "30d"])
        step("The run journal (keys in it are encrypted):", ["runs", "list"])
    render.stdout().print()
    render.heading("That was certfleet. Try it on the same fleet: certfleet sim serve --help")
    if failures:
        for failure in failures:
            render.error(f"the demo did not go as expected: {failure}")
        raise typer.Exit(1)
