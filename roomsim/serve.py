"""`python -m roomsim serve`: run a simulated fleet until SIGINT/SIGTERM.

Prints exactly one line, `ready`, on stdout once every device listens; everything else
goes to stderr."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from roomsim.faults import FaultError, load_faults_file
from roomsim.fleet import SimFleet

CLOUD_INVENTORY = "inventory-cloud.yaml"


async def serve(
    devices: int,
    state: Path,
    inventory_out: Path | None = None,
    faults_file: Path | None = None,
    request_delay: float = 0.0,
    *,
    renewal_interval: float | None = None,
    ready: Callable[[SimFleet, Path], None] | None = None,
    stop: asyncio.Event | None = None,
    cloud: bool = False,
    cloud_rate_per_minute: int = 300,
) -> None:
    """Start the fleet, apply faults, write the inventory, call `ready(fleet, inventory)`,
    then serve until `stop` is set or SIGINT/SIGTERM arrives; always stops cleanly.

    With `cloud` the fleet also serves the simulated Webex cloud API, and a cloud
    inventory is written to `<state>/inventory-cloud.yaml`."""
    faults = load_faults_file(faults_file) if faults_file is not None else None
    fleet = SimFleet(
        state,
        devices,
        request_delay=request_delay,
        renewal_interval=renewal_interval,
        cloud=cloud,
        cloud_rate_per_minute=cloud_rate_per_minute,
    )
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
            handled.append(signum)
    try:
        await fleet.start()
        if faults is not None:
            await fleet.apply_faults(faults)
        inventory = fleet.write_inventory(inventory_out or fleet.state_dir / "inventory.yaml")
        if cloud:
            fleet.write_inventory(fleet.state_dir / CLOUD_INVENTORY, cloud=True)
        if ready is not None:
            ready(fleet, inventory)
        await stop.wait()
    finally:
        await fleet.stop()
        for signum in handled:
            loop.remove_signal_handler(signum)


def _raise_open_files_limit() -> None:
    """Each device holds a listening socket: allow as many open files as permitted."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run_serve(
    devices: int,
    state: Path,
    inventory_out: Path | None = None,
    faults_file: Path | None = None,
    request_delay: float = 0.0,
    renewal_interval: float | None = None,
    cloud: bool = False,
    cloud_rate_per_minute: int = 300,
) -> int:
    """Blocking entry point for `python -m roomsim serve` and `certfleet sim serve`.
    Returns the exit code: 0 after a clean stop, 2 on bad input, 1 on an OS error."""

    def ready(fleet: SimFleet, inventory: Path) -> None:
        print(
            f"roomsim: {len(fleet.devices)} devices on 127.0.0.1, inventory {inventory}, "
            f"CA {fleet.ca_pem_path}",
            file=sys.stderr,
        )
        if fleet.cloud is not None:
            print(
                f"roomsim: Webex cloud API at {fleet.cloud_url} (paths /v1/...), bearer token in "
                f"{fleet.cloud_token_path}, cloud inventory {fleet.state_dir / CLOUD_INVENTORY}",
                file=sys.stderr,
            )
        print("ready", flush=True)

    _raise_open_files_limit()
    try:
        asyncio.run(
            serve(
                devices,
                state,
                inventory_out,
                faults_file,
                request_delay,
                renewal_interval=renewal_interval,
                ready=ready,
                cloud=cloud,
                cloud_rate_per_minute=cloud_rate_per_minute,
            )
        )
    except (FaultError, ValueError, KeyError) as exc:
        print(f"roomsim: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"roomsim: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m roomsim", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="serve a simulated fleet on 127.0.0.1")
    serve_cmd.add_argument("--devices", type=int, default=5, help="number of devices (5)")
    serve_cmd.add_argument("--state", type=Path, required=True, help="state folder")
    serve_cmd.add_argument("--inventory-out", type=Path, help="inventory file to write")
    serve_cmd.add_argument("--faults", type=Path, help="JSON faults file")
    serve_cmd.add_argument(
        "--request-delay", type=float, default=0.0, help="seconds added to every reply (0)"
    )
    serve_cmd.add_argument(
        "--renewal-interval",
        type=float,
        metavar="SECONDS",
        help="run every device's SCEP renewal check this often (default: never)",
    )
    serve_cmd.add_argument(
        "--cloud",
        action="store_true",
        help="also serve the simulated Webex cloud API (URL printed on stderr)",
    )
    serve_cmd.add_argument(
        "--cloud-rate",
        type=int,
        default=300,
        metavar="PER_MINUTE",
        help="cloud API requests allowed per token per minute (300)",
    )
    args = parser.parse_args(argv)
    return run_serve(
        args.devices,
        args.state,
        args.inventory_out,
        args.faults,
        args.request_delay,
        args.renewal_interval,
        cloud=args.cloud,
        cloud_rate_per_minute=args.cloud_rate,
    )
