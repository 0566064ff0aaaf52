"""fleet.plans.push_ca — make each device's CA (trust) list contain the given CAs.

Idempotent by fingerprint: a CA the device already lists is not sent again. With ``prune``
every CA on the device that is not in the given set is deleted. ``CA Add`` appends (the
device keeps what it had), one certificate per call so a failure names the certificate.
After the changes the list is read back and must match, or the device is reported failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import CommandError
from ..pki.certs import CaCertificate
from ..results import Change
from ..xapi.commands import CertificateInfo
from .base import DeviceContext

__all__ = ["PushCa"]

_SYNC = ("Peripherals", "Security", "Certificates", "SyncToPeripherals", "Enabled")


@dataclass
class PushCa:
    cas: Sequence[CaCertificate]
    prune: bool = False
    #: Peripherals Security Certificates SyncToPeripherals Enabled: True/False, None = leave
    sync_to_peripherals: bool | None = None
    name: str = "push-ca"

    def _wanted(self, fingerprint: str) -> CaCertificate | None:
        return next((ca for ca in self.cas if ca.matches(fingerprint)), None)

    async def read(self, ctx: DeviceContext) -> list[CertificateInfo]:
        current = await ctx.xapi.ca_show()
        ctx.result.fingerprints_before = [c.fingerprint for c in current]
        if self._sync(ctx):
            value = await ctx.xapi.read_tree(("Configuration", *_SYNC))
            ctx.fact("sync_to_peripherals", value if isinstance(value, str) else None)
        elif self.sync_to_peripherals is not None:
            fw = ctx.firmware
            assert fw is not None
            ctx.result.message = (
                f"--sync-to-peripherals left alone: a {fw.product or 'device'} on RoomOS "
                f"{fw.label} has no Peripherals Security Certificates SyncToPeripherals")
        return current

    def _sync(self, ctx: DeviceContext) -> bool:
        """Whether to read and set SyncToPeripherals: asked for, and the product has it."""
        if self.sync_to_peripherals is None:
            return False
        return ctx.firmware is None or ctx.firmware.has_configuration(_SYNC)

    def diff(self, ctx: DeviceContext, state: list[CertificateInfo]) -> list[Change]:
        present = {c.fingerprint for c in state}
        changes = [
            Change("ca.add", ca.sha1, ca.subject)
            for ca in self.cas
            if not any(ca.matches(fp) for fp in present)
        ]
        if self.sync_to_peripherals is not None and self._sync(ctx):
            wanted = "True" if self.sync_to_peripherals else "False"
            if ctx.result.facts.get("sync_to_peripherals") != wanted:
                changes.append(Change("config.set", "Peripherals Security Certificates "
                                      "SyncToPeripherals Enabled", wanted))
        if self.prune:
            changes += [
                Change("ca.delete", c.fingerprint, c.subject)
                for c in state
                if self._wanted(c.fingerprint) is None
            ]
        return changes

    async def apply(
        self, ctx: DeviceContext, state: list[CertificateInfo], changes: list[Change]
    ) -> None:
        by_sha1 = {ca.sha1: ca for ca in self.cas}
        # Add first, delete last: a device is never left with fewer trust anchors than needed.
        for change in sorted(changes, key=lambda c: c.action != "ca.add"):
            if change.action == "ca.add":
                await ctx.xapi.ca_add(by_sha1[change.target].pem)
            elif change.action == "config.set":
                await ctx.xapi.set_configuration(_SYNC, change.detail)
            else:
                await ctx.xapi.ca_delete(change.target)
            change.applied = True
        if any(c.action == "config.set" for c in changes) or (
            self.sync_to_peripherals and self._sync(ctx)
            and any(c.action == "ca.add" for c in changes)
        ):
            ctx.result.message = ("Room Navigators use synced CAs only after the device "
                                  "reboots (SyncToPeripherals)")
        after = await ctx.xapi.ca_show()
        ctx.result.fingerprints_after = [c.fingerprint for c in after]
        missing = [ca for ca in self.cas if not any(ca.matches(c.fingerprint) for c in after)]
        if missing:
            names = ", ".join(f"{ca.subject} ({ca.sha1})" for ca in missing)
            raise CommandError(
                f"the device accepted CA Add but does not list {names}",
                xpath="Security/Certificates/CA/Show",
            )
        if self.prune:
            extra = [c for c in after if self._wanted(c.fingerprint) is None]
            if extra:
                raise CommandError(
                    "CA Delete succeeded but the device still lists "
                    + ", ".join(c.fingerprint for c in extra),
                    xpath="Security/Certificates/CA/Show",
                )
