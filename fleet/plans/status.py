"""fleet.plans.status — read each device's identity, service certificates and CA list.

Read-only: ``diff`` is always empty, so every reachable device is ``ok``. The data lands in the
device result's ``facts`` for the table and the JSON document.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from ..results import Change, RunResult
from ..xapi.commands import CertificateInfo, SystemUnit
from .base import DeviceContext
from .renewal import DEVICE_RENEWAL_WINDOW, self_renewing

__all__ = ["DeviceStatus", "Expiring", "Status", "expiring_certificates"]


@dataclass
class DeviceStatus:
    unit: SystemUnit
    services: list[CertificateInfo]
    cas: list[CertificateInfo]


@dataclass
class Status:
    name: str = "status"
    read_only: bool = True

    async def read(self, ctx: DeviceContext) -> DeviceStatus:
        # the run has read it already (once per device per run: learn_firmware)
        unit = ctx.unit if ctx.unit is not None else await ctx.xapi.system_unit()
        services = await ctx.xapi.services_show()
        cas = await ctx.xapi.ca_show()
        profiles = await ctx.xapi.profiles_list(tolerant=True)
        owned = self_renewing(services, cas, profiles)
        window = DEVICE_RENEWAL_WINDOW.total_seconds() / 86400
        ctx.fact("system", unit.to_dict())
        certificates = []
        for cert in services:
            data = cert.to_dict(ctx.now)
            profile = owned.get(cert.fingerprint)
            data["renewal_profile"] = profile.fingerprint if profile else None
            days = cert.days_left(ctx.now)
            data["device_renews"] = bool(profile and days is not None and days <= window)
            certificates.append(data)
        ctx.fact("certificates", certificates)
        ctx.fact("cas", [c.to_dict(ctx.now) for c in cas])
        ctx.fact("profiles", [p.to_dict() for p in profiles])
        return DeviceStatus(unit=unit, services=services, cas=cas)

    def diff(self, ctx: DeviceContext, state: DeviceStatus) -> list[Change]:
        return []

    async def apply(
        self, ctx: DeviceContext, state: DeviceStatus, changes: list[Change]
    ) -> None:
        raise AssertionError("status never changes a device")


@dataclass(frozen=True)
class Expiring:
    device: str
    kind: str  # "service" | "ca"
    fingerprint: str
    subject: str
    purposes: tuple[str, ...]
    days_left: float


def expiring_certificates(
    run: RunResult, within: dt.timedelta, now: dt.datetime | None = None
) -> list[Expiring]:
    """Certificates that expire within ``within`` (or already have): service certificates in
    use for some purpose, and every CA on the trust list. Unused service certificates (factory
    and superseded ones) do not count: nothing breaks when they expire."""
    now = now or dt.datetime.now(dt.UTC)
    limit = within.total_seconds() / 86400
    found: list[Expiring] = []
    for result in run.devices:
        for kind, key in (("service", "certificates"), ("ca", "cas")):
            for cert in result.facts.get(key, []):
                days = cert.get("days_left")
                if days is None or days > limit:
                    continue
                if kind == "service" and not cert.get("purposes"):
                    continue
                found.append(
                    Expiring(
                        device=result.device,
                        kind=kind,
                        fingerprint=cert["fingerprint"],
                        subject=cert["subject"],
                        purposes=tuple(cert.get("purposes", ())),
                        days_left=days,
                    )
                )
    return found
