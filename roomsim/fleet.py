"""`SimFleet`: N simulated devices in one asyncio process, and `SimFleetThread`, the same
fleet run in a background thread for synchronous callers (tests, the CLI demo)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import logging
import re
import threading
from collections.abc import Awaitable, Coroutine, Generator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from .cloud import TOKEN_FILE, CloudServer
from .cloud_api import device_id_for as cloud_device_id
from .commands import CommandRegistry, default_registry
from .device import SCEP_TIMEOUT, SimDevice
from .enrollment import RenewalResult
from .faults import (
    ALL_DEVICES,
    FaultError,
    FaultPlan,
    check_faults,
    load_faults_file,
    parse_percent,
    pick_fraction,
)
from .firmware import DEFAULT_RELEASE, check_choice, firmware_for
from .inventory import CloudInventory, write_inventory
from .loop import new_event_loop
from .server import DeviceServer, ServerSettings
from .state import StateDir

T = TypeVar("T")
log = logging.getLogger(__name__)
_NAME_PREFIX = re.compile(r"^[a-z0-9][a-z0-9-]{0,40}$")


class _Done:
    """An awaitable that has nothing left to do."""

    def __await__(self) -> Generator[Any, None, None]:
        yield from ()


class SimFleet:
    """Simulated devices `{name_prefix}-001` … on 127.0.0.1, one port each.

    Rates and queues are per device and per auth class (Basic / session cookie); the
    defaults are a real device's. `request_delay` is added to every reply.

    SCEP: `scep_timeout` bounds each HTTP request a device makes to a SCEP server;
    `renewal_interval` (seconds) runs every device's renewal check that often (a real
    device: once a day); None, the default, leaves it to `run_renewal`.

    Cloud: `cloud=True` also serves the Webex cloud REST API for every device on one more
    HTTPS port (`cloud_url`, bearer `cloud_token`; see `roomsim/cloud.py`), allowing
    `cloud_rate_per_minute` requests per token per minute; commands matching a
    `cloud_disallowed_commands` pattern (`Security.Certificates.*`) are refused there.

    Firmware: `firmware` is a modelled RoomOS release for every device (products cycle as
    before) or "mix" (`roomsim/firmware.py` MIX); `device_firmware` overrides it per device
    name, as `RELEASE` or `RELEASE:PRODUCT-CODE` (e.g. "11.24.1:vecchio"). Each device
    refuses what its release and product lack; `violations()` lists what any device was
    sent outside them."""

    def __init__(
        self,
        state_dir: Path,
        devices: int = 5,
        *,
        name_prefix: str = "room",
        basic_rate: float = 1.0,
        basic_queue: int = 30,
        session_rate: float = 15.0,
        session_queue: int = 90,
        lockout_seconds: float = 300.0,
        reboot_seconds: float = 5.0,
        request_delay: float = 0.0,
        scep_timeout: float = SCEP_TIMEOUT,
        renewal_interval: float | None = None,
        cloud: bool = False,
        cloud_rate_per_minute: int = 300,
        cloud_disallowed_commands: tuple[str, ...] = (),
        firmware: str = DEFAULT_RELEASE,
        device_firmware: Mapping[str, str] | None = None,
    ) -> None:
        if devices < 1:
            raise ValueError("a fleet needs at least one device")
        if not _NAME_PREFIX.match(name_prefix):
            raise ValueError(f"name_prefix {name_prefix!r}: use lowercase letters, digits and -")
        if renewal_interval is not None and renewal_interval <= 0:
            raise ValueError("renewal_interval must be > 0 seconds (or None: off)")
        if cloud_rate_per_minute < 1:
            raise ValueError("cloud_rate_per_minute must be at least 1")
        self.firmware = check_choice(firmware)
        self.device_firmware = {name: check_choice(choice)
                                for name, choice in (device_firmware or {}).items()}
        self.state = StateDir(Path(state_dir))
        self.count = devices
        self.name_prefix = name_prefix
        self.settings = ServerSettings(
            basic_rate=basic_rate,
            basic_queue=basic_queue,
            session_rate=session_rate,
            session_queue=session_queue,
            lockout_seconds=lockout_seconds,
            reboot_seconds=reboot_seconds,
            request_delay=request_delay,
        )
        self.scep_timeout = scep_timeout
        self.renewal_interval = renewal_interval
        self.devices: dict[str, SimDevice] = {}
        self.servers: dict[str, DeviceServer] = {}
        self.password = ""
        self.registry: CommandRegistry = default_registry()
        self.cloud_enabled = cloud
        self.cloud_rate_per_minute = cloud_rate_per_minute
        self.cloud_disallowed_commands = tuple(cloud_disallowed_commands)
        self.cloud: CloudServer | None = None
        self._started = False
        self._renewal_task: asyncio.Task[None] | None = None

    @property
    def state_dir(self) -> Path:
        return self.state.root

    @property
    def ca_pem_path(self) -> Path:
        return self.state.ca_pem_path

    @property
    def password_path(self) -> Path:
        return self.state.password_path

    def names(self) -> list[str]:
        return [f"{self.name_prefix}-{i:03d}" for i in range(1, self.count + 1)]

    async def start(self) -> None:
        """Create or load the state and open every device's listener. Idempotent."""
        if self._started:
            return
        self.state.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        ca_cert, ca_key = self.state.ensure_ca()
        self.password = self.state.ensure_password()
        registry = self.registry
        for index, name in enumerate(self.names(), 1):
            if name in self.devices:
                continue
            device = SimDevice.open(
                self.state,
                name,
                index,
                password=self.password,
                ca_cert=ca_cert,
                ca_key=ca_key,
                scep_timeout=self.scep_timeout,
                firmware=firmware_for(self.device_firmware.get(name, self.firmware), index),
            )
            self.devices[name] = device
            self.servers[name] = DeviceServer(device, self.settings, registry)
        await asyncio.gather(*(server.start() for server in self.servers.values()))
        if self.cloud_enabled and self.cloud is None:
            cloud = CloudServer(
                self.state,
                self.devices,
                self.servers,
                registry,
                ca_cert=ca_cert,
                ca_key=ca_key,
                rate_per_minute=self.cloud_rate_per_minute,
                disallowed=self.cloud_disallowed_commands,
            )
            await cloud.start()
            self.cloud = cloud
        self._started = True
        if self.renewal_interval is not None:
            self._renewal_task = asyncio.get_running_loop().create_task(
                self._renew_periodically(self.renewal_interval)
            )

    def violations(self) -> list[str]:
        """Every command, parameter, value or configuration write any device received that
        its release and product lack (from the devices' request logs); [] when none."""
        return [v for device in self.devices.values() for v in device.violations()]

    async def stop(self) -> None:
        """Close every listener and write every device's state."""
        if self._renewal_task is not None:
            self._renewal_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewal_task
            self._renewal_task = None
        if self.cloud is not None:
            await self.cloud.stop()
            self.cloud = None
        await asyncio.gather(*(server.stop() for server in self.servers.values()))
        for device in self.devices.values():
            device.save()
        self._started = False

    def write_inventory(self, path: Path, cloud: bool = False) -> Path:
        """The certfleet inventory: local transport, or with `cloud` the cloud transport
        (`device_id` per device; `api_url`, `api_verify` and `token` in defaults)."""
        settings = None
        if cloud:
            settings = CloudInventory(
                api_url=self.cloud_url,
                token_path=self.cloud_token_path,
                device_ids={name: self.cloud_device_id(name) for name in self.devices},
                # a faster-than-Webex sim (tests): pace the client a little under its limit
                rate_per_minute=(None if self.cloud_rate_per_minute == 300
                                 else max(1.0, round(self.cloud_rate_per_minute * 0.93))),
            )
        return write_inventory(
            Path(path), self.devices.values(), self.password_path, self.ca_pem_path, settings
        )

    # ------------------------------------------------------------------ cloud API

    def _cloud(self) -> CloudServer:
        if self.cloud is None:
            raise RuntimeError("the cloud API is not running: SimFleet(cloud=True), started")
        return self.cloud

    @property
    def cloud_url(self) -> str:
        """`https://127.0.0.1:PORT`, the cloud API's base URL (paths `/v1/...`)."""
        return self._cloud().url

    @property
    def cloud_token(self) -> str:
        """The bearer token the cloud API accepts (also in `<state>/cloud-token`)."""
        return self._cloud().token

    @property
    def cloud_token_path(self) -> Path:
        return self.state.root / TOKEN_FILE

    def cloud_device_id(self, name: str) -> str:
        """The stable Webex-style device id of device `name`."""
        if name not in self.names():
            raise KeyError(f"no simulated device named {name!r}")
        return cloud_device_id(name)

    def set_cloud_offline(self, name: str, offline: bool = True) -> None:
        """Show device `name` as `disconnected` in the cloud (its xAPI calls then fail);
        configuration changes made meanwhile reach it when it is set back online."""
        self._cloud().set_offline(name, offline)

    def force_429(self, count: int, retry_after: str | None = "2", *, html: bool = False) -> None:
        """The next `count` cloud requests answer 429 with `Retry-After: retry_after` (sent
        as given, so "soon" works; None: no header), with a JSON or an HTML body."""
        self._cloud().force_429(count, retry_after, html=html)

    # ------------------------------------------------------------------ faults

    def _targets(self, name: str | None) -> list[str]:
        if name is None or name == ALL_DEVICES:
            return list(self.devices)
        if name not in self.devices:
            raise KeyError(f"no simulated device named {name!r}")
        return [name]

    def _fault_targets(self, name: str | None, seed: int = 0) -> list[str]:
        """A device name, "*"/None, or a share "P%" (see `pick_fraction`)."""
        percent = parse_percent(name) if name is not None else None
        if percent is not None:
            return pick_fraction(self.devices, percent, seed)
        return self._targets(name)

    def pick_fraction(self, percent: float | str, seed: int = 0) -> list[str]:
        """The devices a share of the fleet names (`10`, `2.5` or `"10%"`): sorted names,
        `random.Random(f"roomsim-faults/{seed}/{P}")`, `max(1, round(N*P/100))` of them —
        the same rule as a `"P%"` key of a faults file. Different percentages or seeds give
        independent picks."""
        value = parse_percent(percent) if isinstance(percent, str) else float(percent)
        if value is None:
            raise FaultError(f"{percent!r} is not a share like 10%")
        return pick_fraction(self.devices, value, seed)

    def set_fault(self, name: str, **faults: Any) -> Awaitable[None]:
        """Set faults on device `name` ("*" = all, "P%" = a share of the fleet picked with
        seed 0); falsy values clear single faults.

        Takes effect for the next request at once; the returned awaitable completes when the
        listeners match (await it when a test needs `offline` to refuse connections)."""
        targets = self._fault_targets(name)
        checked = check_faults(faults)
        for target in targets:
            self.devices[target].faults.update(**checked)
        return self._sync(targets)

    async def set_fault_fraction(
        self, percent: float | str, seed: int = 0, **faults: Any
    ) -> list[str]:
        """Set faults on a share of the fleet (see `pick_fraction`); the chosen names."""
        targets = self.pick_fraction(percent, seed)
        checked = check_faults(faults)
        for target in targets:
            self.devices[target].faults.update(**checked)
        await self._sync(targets)
        return targets

    def clear_faults(self, name: str | None = None) -> Awaitable[None]:
        """Clear every fault on `name` (a device, "*" or "P%"), or on every device when None."""
        targets = self._fault_targets(name)
        for target in targets:
            self.devices[target].faults.clear()
        return self._sync(targets)

    def apply_faults(
        self, spec: FaultPlan | Mapping[str, Mapping[str, Any]], seed: int = 0
    ) -> Awaitable[None]:
        """Apply a FaultPlan, or `{"device": {...}, "10%": {...}, "*": {...}}` (picked with
        `seed`); device entries win over shares, shares over "*"."""
        if not isinstance(spec, FaultPlan):
            plan = FaultPlan(seed=seed)
            for target, faults in spec.items():
                plan.add(target, check_faults(faults), target)
            spec = plan
        resolved = spec.resolve(list(self.devices))
        for target, faults in resolved.items():
            self.devices[target].faults.update(**faults)
        return self._sync(list(resolved))

    def apply_faults_file(self, path: Path) -> Awaitable[None]:
        return self.apply_faults(load_faults_file(Path(path)))

    def _sync(self, names: list[str]) -> Awaitable[None]:
        if not self._started:
            return _Done()
        return asyncio.ensure_future(self._sync_all(names))

    async def _sync_all(self, names: list[str]) -> None:
        await asyncio.gather(*(self.servers[n].sync() for n in names))

    async def reboot(self, name: str, action: str = "Restart") -> None:
        """Reboot a device as `SystemUnit Boot` does; returns when it is back up."""
        await self.servers[name].boot(action)

    # ------------------------------------------------------------------ SCEP renewal

    async def run_renewal(
        self, name: str | None = None, now: dt.datetime | None = None
    ) -> dict[str, list[RenewalResult]]:
        """Run the renewal check of device `name` ("*" or None = every device, at once);
        what each device renewed or failed to. Enrollments against one SCEP server are
        serialised by the SCEP client."""
        targets = self._targets(name)
        results = await asyncio.gather(*(self.devices[t].run_renewal_check(now) for t in targets))
        return dict(zip(targets, results, strict=True))

    async def _renew_periodically(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                for name, results in (await self.run_renewal()).items():
                    for result in results:
                        if result.error is not None:
                            log.warning("%s: renewal: %s", name, result.error)
            except Exception:  # keep the timer alive; the next round tries again
                log.exception("renewal check failed")


class SimFleetThread:
    """Runs a `SimFleet` in a background thread with its own event loop.

    `with SimFleetThread(state_dir, devices=5) as sim:` starts the fleet, writes
    `state_dir/inventory.yaml` (`sim.inventory_path`) and stops it on exit. Methods are
    synchronous and thread-safe; they run on the fleet's loop."""

    def __init__(self, state_dir: Path, devices: int = 5, **kwargs: Any) -> None:
        self.fleet = SimFleet(state_dir, devices, **kwargs)
        self.inventory_path: Path = self.fleet.state_dir / "inventory.yaml"
        # written at start when the fleet serves the cloud API
        self.cloud_inventory_path: Path = self.fleet.state_dir / "inventory-cloud.yaml"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle
    def start(self, timeout: float = 600.0) -> SimFleetThread:
        if self._thread is not None:
            return self
        loop = new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="roomsim", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            self.run(self.fleet.start(), timeout=timeout)
        except BaseException:
            self.stop()
            raise
        self.inventory_path = self.fleet.write_inventory(self.inventory_path)
        if self.fleet.cloud is not None:
            self.cloud_inventory_path = self.fleet.write_inventory(
                self.cloud_inventory_path, cloud=True
            )
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            self.run(self.fleet.stop(), timeout=60.0)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10.0)
            loop.close()
            self._loop = self._thread = None

    def __enter__(self) -> SimFleetThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = 60.0) -> T:
        """Run a coroutine on the fleet's loop and wait for its result."""
        if self._loop is None:
            coro.close()
            raise RuntimeError("the simulated fleet is not running")
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    # -- the SimFleet surface, synchronously
    @property
    def devices(self) -> dict[str, SimDevice]:
        return self.fleet.devices

    def violations(self) -> list[str]:
        async def collect() -> list[str]:
            return self.fleet.violations()

        return self.run(collect())

    @property
    def password(self) -> str:
        return self.fleet.password

    @property
    def ca_pem_path(self) -> Path:
        return self.fleet.ca_pem_path

    @property
    def state_dir(self) -> Path:
        return self.fleet.state_dir

    def write_inventory(self, path: Path, cloud: bool = False) -> Path:
        return self.fleet.write_inventory(path, cloud)

    @property
    def cloud_url(self) -> str:
        return self.fleet.cloud_url

    @property
    def cloud_token(self) -> str:
        return self.fleet.cloud_token

    def cloud_device_id(self, name: str) -> str:
        return self.fleet.cloud_device_id(name)

    def set_cloud_offline(self, name: str, offline: bool = True) -> None:
        async def apply() -> None:
            self.fleet.set_cloud_offline(name, offline)

        self.run(apply())

    def force_429(self, count: int, retry_after: str | None = "2", *, html: bool = False) -> None:
        async def apply() -> None:
            self.fleet.force_429(count, retry_after, html=html)

        self.run(apply())

    def set_fault(self, name: str, **faults: Any) -> None:
        """As `SimFleet.set_fault` ("P%" targets a share of the fleet, seed 0)."""

        async def apply() -> None:
            await self.fleet.set_fault(name, **faults)

        self.run(apply())

    def set_fault_fraction(self, percent: float | str, seed: int = 0, **faults: Any) -> list[str]:
        """Set faults on a share of the fleet; returns the chosen device names."""
        return self.run(self.fleet.set_fault_fraction(percent, seed, **faults))

    def pick_fraction(self, percent: float | str, seed: int = 0) -> list[str]:
        return self.fleet.pick_fraction(percent, seed)

    def apply_faults(
        self, spec: FaultPlan | Mapping[str, Mapping[str, Any]], seed: int = 0
    ) -> None:
        async def apply() -> None:
            await self.fleet.apply_faults(spec, seed)

        self.run(apply())

    def clear_faults(self, name: str | None = None) -> None:
        async def apply() -> None:
            await self.fleet.clear_faults(name)

        self.run(apply())

    def reboot(self, name: str, action: str = "Restart") -> None:
        self.run(self.fleet.reboot(name, action), timeout=None)

    def run_renewal(
        self, name: str | None = None, now: dt.datetime | None = None
    ) -> dict[str, list[RenewalResult]]:
        return self.run(self.fleet.run_renewal(name, now), timeout=None)
