"""certfleet sim serve — a simulated RoomOS fleet on loopback, with an inventory for it."""

from __future__ import annotations

from pathlib import Path

import typer

from certfleet.fleet.xapi.releases import SUPPORTED

app = typer.Typer(help="Simulated RoomOS devices for trying certfleet out.", no_args_is_help=True)


@app.command("serve")
def serve(
    devices: int = typer.Option(10, "--devices", "-n", min=1, max=20000,
                                help="How many devices to simulate."),
    state: Path = typer.Option(Path("sim-state"), "--state",
                               help="Folder for the simulated devices' state (kept across runs)."),
    inventory_out: Path | None = typer.Option(
        None,
        "--inventory-out",
        help="Where to write the inventory (default: STATE/inventory.yaml).",
    ),
    faults: Path | None = typer.Option(None, "--faults", help="JSON file of per-device faults."),
    fault: list[str] = typer.Option(
        [], "--fault", metavar="NAME[=VALUE][@TARGET]",
        help="A fault on a device, on * (every device) or on a share like 10%; repeatable, "
        "on top of --faults. E.g. truncate@10%, latency=0.2@room-003, storm_503=5@*, "
        "hostile_xml=external@5%, offline_after=4@room-007.",
    ),
    fault_seed: int | None = typer.Option(
        None, "--fault-seed", show_default=False,
        help="Seed that picks the devices of a share (default: the faults file's, else 0).",
    ),
    request_delay: float = typer.Option(
        0.0, "--request-delay", min=0.0, help="Seconds each device takes per request."
    ),
    renewal_interval: float | None = typer.Option(
        None, "--renewal-interval", min=0.1, show_default=False,
        help="Run every device's SCEP renewal check this often, in seconds (default: never).",
    ),
    cloud: bool = typer.Option(
        False, "--cloud", help="Also serve the simulated Webex cloud API for the same devices "
        "(URL and token file printed; STATE/inventory-cloud.yaml written).",
    ),
    cloud_rate: int = typer.Option(
        300, "--cloud-rate", min=1, help="Cloud API requests allowed per token per minute "
        "(429 with Retry-After above it).",
    ),
    firmware: str = typer.Option(
        SUPPORTED[-1], "--firmware", metavar="RELEASE|mix",
        help=f"RoomOS release every device runs (one of {', '.join(SUPPORTED)}), or 'mix': a "
        "fixed mix of releases and products (see the README). Each device accepts only what "
        "its release and product have.",
    ),
) -> None:
    """Serve N simulated devices on 127.0.0.1; prints `ready` when all listen. Ctrl-C stops."""
    from certfleet.roomsim.serve import run_serve

    raise typer.Exit(
        run_serve(
            devices=devices,
            state=state,
            inventory_out=inventory_out,
            faults_file=faults,
            request_delay=request_delay,
            renewal_interval=renewal_interval,
            cloud=cloud,
            cloud_rate_per_minute=cloud_rate,
            fault_specs=fault,
            fault_seed=fault_seed,
            firmware=firmware,
        )
    )
