"""`python -m certfleet.roomsim serve`: run a simulated fleet until SIGINT/SIGTERM.

Prints exactly one line, `ready`, on stdout once every device listens; everything else
goes to stderr (including which devices got which faults).

Faults: `--faults FILE` (JSON) and `--fault NAME[=VALUE][@TARGET]` (repeatable; on top of
the file), `--fault-seed N` for the shares (`@10%`); see roomsim/faults.py. A bad fault
or target exits 2 before anything listens."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import resource
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from certfleet.fleet.xapi.releases import SUPPORTED

from .faults import FaultError, FaultPlan, load_faults_file, plan_from_specs
from .firmware import DEFAULT_RELEASE, check_choice
from .fleet import SimFleet
from .loop import new_event_loop

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
    fault_specs: Sequence[str] = (),
    fault_seed: int | None = None,
    firmware: str = DEFAULT_RELEASE,
) -> None:
    """Start the fleet, apply faults, write the inventory, call `ready(fleet, inventory)`,
    then serve until `stop` is set or SIGINT/SIGTERM arrives; always stops cleanly.

    With `cloud` the fleet also serves the simulated Webex cloud API, and a cloud
    inventory is written to `<state>/inventory-cloud.yaml`."""
    faults = fault_plan(faults_file, fault_specs, fault_seed)
    fleet = SimFleet(
        state,
        devices,
        request_delay=request_delay,
        renewal_interval=renewal_interval,
        cloud=cloud,
        cloud_rate_per_minute=cloud_rate_per_minute,
        firmware=firmware,
    )
    if faults is not None:
        faults.resolve(fleet.names())  # unknown device names: exit 2 before anything starts
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


def fault_plan(
    faults_file: Path | None, specs: Sequence[str] = (), seed: int | None = None
) -> FaultPlan | None:
    """The faults file with the `--fault` specs on top; None when there are none."""
    if faults_file is None and not specs:
        return None
    plan = load_faults_file(faults_file) if faults_file is not None else FaultPlan()
    plan = plan.merge(plan_from_specs(specs))
    if seed is not None:
        plan.seed = seed
    return plan


def describe_faults(fleet: SimFleet) -> list[str]:
    """One line per device with faults: `room-003: latency=0.2 truncate`."""
    lines = []
    for name, device in fleet.devices.items():
        active = device.faults.active()
        if active:
            items = " ".join(k if v is True else f"{k}={v}" for k, v in active.items())
            lines.append(f"{name}: {items}")
    return lines


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
    fault_specs: Sequence[str] = (),
    fault_seed: int | None = None,
    firmware: str = DEFAULT_RELEASE,
) -> int:
    """Blocking entry point for `python -m certfleet.roomsim serve` and `certfleet sim serve`.
    Returns the exit code: 0 after a clean stop, 2 on bad input, 1 on an OS error."""

    def ready(fleet: SimFleet, inventory: Path) -> None:
        # this process is the simulator's own: what start-up made (devices, certificates,
        # settings, schema models) lives as long as it does, and out of the collector's
        # sight full collections stop walking it (~2.5% of its CPU in a rotation, by perf)
        gc.freeze()
        print(
            f"roomsim: {len(fleet.devices)} devices on 127.0.0.1, inventory {inventory}, "
            f"CA {fleet.ca_pem_path}",
            file=sys.stderr,
        )
        faulty = describe_faults(fleet)
        if faulty:
            print(f"roomsim: faults on {len(faulty)} device(s):", file=sys.stderr)
            for line in faulty:
                print(f"roomsim:   {line}", file=sys.stderr)
        if fleet.cloud is not None:
            print(
                f"roomsim: Webex cloud API at {fleet.cloud_url} (paths /v1/...), bearer token in "
                f"{fleet.cloud_token_path}, cloud inventory {fleet.state_dir / CLOUD_INVENTORY}",
                file=sys.stderr,
            )
        print("ready", flush=True)

    try:
        fault_plan(faults_file, fault_specs, fault_seed)  # bad specs: exit 2 at once
        check_choice(firmware)
    except (FaultError, ValueError) as exc:
        print(f"roomsim: {exc}", file=sys.stderr)
        return 2
    _raise_open_files_limit()
    try:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            runner.run(serve(
                devices,
                state,
                inventory_out,
                faults_file,
                request_delay,
                renewal_interval=renewal_interval,
                ready=ready,
                cloud=cloud,
                cloud_rate_per_minute=cloud_rate_per_minute,
                fault_specs=fault_specs,
                fault_seed=fault_seed,
                firmware=firmware,
            ))
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
    parser = argparse.ArgumentParser(prog="python -m certfleet.roomsim", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="serve a simulated fleet on 127.0.0.1")
    serve_cmd.add_argument("--devices", type=int, default=5, help="number of devices (5)")
    serve_cmd.add_argument("--state", type=Path, required=True, help="state folder")
    serve_cmd.add_argument("--inventory-out", type=Path, help="inventory file to write")
    serve_cmd.add_argument("--faults", type=Path, help="JSON faults file")
    serve_cmd.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="NAME[=VALUE][@TARGET]",
        help="a fault on a device, on * (all) or on a share (10%%); repeatable, on top of "
        "--faults; e.g. truncate@10%%, latency=0.2@room-003, storm_503=5@*",
    )
    serve_cmd.add_argument(
        "--fault-seed",
        type=int,
        metavar="N",
        help="seed that picks the devices of a share (default: the file's, else 0)",
    )
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
    serve_cmd.add_argument(
        "--firmware",
        default=DEFAULT_RELEASE,
        metavar="RELEASE|mix",
        help=f"RoomOS release every device runs ({DEFAULT_RELEASE}; one of "
        f"{', '.join(SUPPORTED)}), or 'mix': a fixed mix of releases and products",
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
        fault_specs=args.fault,
        fault_seed=args.fault_seed,
        firmware=args.firmware,
    )
