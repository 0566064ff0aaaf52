"""Make-before-break holds when the change is cut off: a device whose time budget runs out
(or a run stopped at once) after the new certificate was activated but before it was
verified gets its old certificate back (found by the soak test: it used to be left with
the new, unverified one in use)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from certfleet.fleet.inventory import Device
from certfleet.fleet.plans.base import DeviceContext
from certfleet.fleet.plans.install import activate_verified
from certfleet.fleet.results import DeviceResult
from certfleet.fleet.xapi.commands import CertificateInfo, Xapi

OLD, NEW = "a" * 40, "b" * 40


class SlowAfterActivate:
    """A device that activates, then never answers the verifying Services Show."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.hang = True

    async def services_activate(self, fp: str, purpose: str) -> None:
        self.calls.append(("activate", fp, purpose))

    async def services_show(self) -> list[CertificateInfo]:
        self.calls.append(("show",))
        if self.hang:
            self.hang = False  # only the first: the rollback's reads are answered
            await asyncio.sleep(3600)
        return []

    async def services_delete(self, fp: str) -> None:
        self.calls.append(("delete", fp))

    async def services_deactivate(self, fp: str, purpose: str) -> None:
        self.calls.append(("deactivate", fp, purpose))


def context(xapi: Any) -> DeviceContext:
    device = cast(Device, type("D", (), {"name": "room-001"})())
    return DeviceContext(device=device, xapi=cast(Xapi, xapi),
                         result=DeviceResult(device="room-001", host="127.0.0.1",
                                             transport="local"))


async def test_a_change_cut_off_after_activation_is_rolled_back() -> None:
    xapi = SlowAfterActivate()
    ctx = context(xapi)
    current = [CertificateInfo(OLD, "CN=old", "CN=ca", None, None, purposes=("HTTPS",))]
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):  # the runner's per-device budget
            await activate_verified(ctx, NEW, ("HTTPS",), current)
    assert xapi.calls == [("activate", NEW, "HTTPS"), ("show",),
                          ("activate", OLD, "HTTPS"), ("delete", NEW)]
    assert ctx.result.message.startswith("cut off before the new certificate was verified; "
                                         f"rolled back: re-activated {OLD} for HTTPS")
