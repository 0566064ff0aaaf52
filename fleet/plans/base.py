"""fleet.plans.base — what a plan is.

A plan is the job for one device, in three parts the runner calls in order:

1. ``read``  — the device's current state (reads only);
2. ``diff``  — the changes that would bring it to the desired state (pure, no I/O);
3. ``apply`` — make and verify those changes (never called in a dry run).

Keeping decide (read + diff) apart from act (apply) is what makes ``--dry-run`` a real
rehearsal against the real device state, and makes every plan idempotent: a device already in
the desired state has no changes and reports ``ok``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from ..firmware import Firmware, firmware_of
from ..inventory import Device
from ..results import Change, DeviceResult
from ..xapi.commands import SystemUnit, Xapi
from ..xapi.transport import ParamValue

if TYPE_CHECKING:
    from ..journal import Journal

__all__ = ["DeviceContext", "Plan", "StateT"]

StateT = TypeVar("StateT")


@dataclass
class DeviceContext:
    """What a plan gets for one device."""

    device: Device
    xapi: Xapi
    result: DeviceResult
    dry_run: bool = False
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    run_id: str = ""
    journal: Journal | None = None
    #: a fresh TLS handshake with the device, verified as the inventory says; returns the
    #: DER of the certificate it presents (to prove a new HTTPS certificate is served)
    peer_certificate: Callable[[], Awaitable[bytes]] | None = None
    #: the device's release and product, read once per run before the plan starts
    #: (:meth:`learn_firmware`); None when a plan is driven without it (unit tests)
    firmware: Firmware | None = None
    unit: SystemUnit | None = None

    async def learn_firmware(self) -> Firmware:
        """Read ``Status SystemUnit`` (the one read of it in the run), keep the release and
        product in the result, and check every later command against that release."""
        unit = await self.xapi.system_unit()
        firmware = firmware_of(unit.raw)
        self.unit = unit
        self.firmware = firmware
        self.xapi.firmware = firmware
        self.result.firmware = firmware.to_dict()
        return firmware

    def require(self, what: str, path: Sequence[str],
                params: Mapping[str, ParamValue] | None = None) -> None:
        """Skip this device (``skipped``, not failed) when its release cannot do ``xCommand
        path params``; the reason names the release it needs."""
        if self.firmware is not None:
            self.firmware.require(what, self.device.name, path, params)

    def step(self, step: str, detail: str = "") -> None:
        """Journal a step of a change as it happens (no-op without a journal)."""
        if self.journal is not None and not self.dry_run:
            self.journal.step(self.run_id, self.device.name, step, detail)

    def fact(self, key: str, value: Any) -> None:
        """Report a piece of read data (shown by ``status`` and in JSON ``facts``)."""
        self.result.facts[key] = value


class Plan(Protocol, Generic[StateT]):
    """The job for one device. ``name`` is the verb it serves (``push-ca``)."""

    name: str

    async def read(self, ctx: DeviceContext) -> StateT: ...

    def diff(self, ctx: DeviceContext, state: StateT) -> list[Change]: ...

    async def apply(self, ctx: DeviceContext, state: StateT, changes: list[Change]) -> None: ...
