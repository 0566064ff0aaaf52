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


def demo(
    devices: int = typer.Option(6, "--devices", "-n", min=2, max=200,
                                help="How many simulated devices."),
    keep: bool = typer.Option(False, "--keep", help="Keep the simulated fleet's state folder."),
) -> None:
    """Start a simulated fleet on 127.0.0.1 and walk through status and push-ca on it."""
    from fleet.pki.local_ca import create_ca
    from roomsim import SimFleetThread

    workdir = Path(tempfile.mkdtemp(prefix="certfleet-demo-"))
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
        step(f"{unplugged} is back: re-run just that one",
             ["push-ca", str(ca_file), str(new_file), "-i", inv, "--limit", unplugged])
        step("Retire the old root everywhere: --prune deletes what is not listed",
             ["push-ca", str(new_file), "-i", inv, "--prune", "--yes"])
    if not keep:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    render.stdout().print()
    render.heading("That was certfleet. Try it on the same fleet: certfleet sim serve --help")
    if failures:
        for failure in failures:
            render.error(f"the demo did not go as expected: {failure}")
        raise typer.Exit(1)
