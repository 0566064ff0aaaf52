"""fleet.plans.renewal — the device's own SCEP renewal profiles: list, set, delete.

RoomOS renews, once a day, every certificate expiring within 45 days whose issuer matches a
profile — including ones it did not enroll (reference §1.3). certfleet shows them so that a
rotation never fights the device (see ``rotate``'s check).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from ..firmware import first_release
from ..results import Change
from ..secrets import Secret
from ..xapi.commands import CertificateInfo, EnrollmentProfile
from .base import DeviceContext

__all__ = ["DEVICE_RENEWAL_WINDOW", "PROFILES_DELETE", "PROFILES_LIST", "PROFILES_SET",
           "RenewalDelete", "RenewalList", "RenewalSet", "renewal_challenge", "self_renewing"]

#: RoomOS renews certificates that expire within this, once a day
DEVICE_RENEWAL_WINDOW = dt.timedelta(days=45)

_ENROLL = ("Security", "Certificates", "Services", "Enrollment")
PROFILES_LIST = (*_ENROLL, "Profiles", "List")
PROFILES_SET = (*_ENROLL, "SCEP", "Profiles", "Set")
PROFILES_DELETE = (*_ENROLL, "Profiles", "Delete")
_A_FINGERPRINT = "0" * 40


def renewal_challenge(ctx: DeviceContext, challenge: Secret | None) -> tuple[Secret | None,
                                                                             str | None]:
    """The challenge to send with ``SCEP Profiles Set`` on this device, and a note when it
    cannot be: ``ChallengePassword`` exists there only from 26.1.1 (11.23-11.27 take ``URL``
    and ``Fingerprint`` only), so an older device gets the profile without it."""
    fw = ctx.firmware
    if challenge is None or fw is None or fw.has_param(PROFILES_SET, "ChallengePassword"):
        return challenge, None
    first = first_release(fw.code, PROFILES_SET, {"Fingerprint": _A_FINGERPRINT, "URL": "u",
                                                  "ChallengePassword": "c"})
    since = f" (it does from {first})" if first else ""
    return None, (f"renewal profile set without its challenge: RoomOS {fw.label} takes no "
                  f"ChallengePassword on SCEP Profiles Set{since}; the SCEP server must let "
                  "renewals in without it")


def self_renewing(
    services: list[CertificateInfo],
    cas: list[CertificateInfo],
    profiles: list[EnrollmentProfile],
) -> dict[str, EnrollmentProfile]:
    """Certificate fingerprint → the profile under which the device renews it by itself.

    A profile names its CA by fingerprint; the CA's subject comes from the device's CA list
    (if the CA is not on it, no issuer can be matched and nothing is reported)."""
    subject_of = {c.fingerprint: c.subject for c in cas}
    owned: dict[str, EnrollmentProfile] = {}
    for profile in profiles:
        subject = subject_of.get(profile.fingerprint)
        if subject is None:
            continue
        for cert in services:
            if cert.issuer == subject:
                owned.setdefault(cert.fingerprint, profile)
    return owned


@dataclass
class RenewalList:
    name: str = "renewal list"
    read_only: bool = True

    async def read(self, ctx: DeviceContext) -> list[EnrollmentProfile]:
        ctx.require("a SCEP renewal profile", PROFILES_LIST)
        profiles = await ctx.xapi.profiles_list()
        ctx.fact("profiles", [p.to_dict() for p in profiles])
        return profiles

    def diff(self, ctx: DeviceContext, state: list[EnrollmentProfile]) -> list[Change]:
        return []

    async def apply(self, ctx: DeviceContext, state: list[EnrollmentProfile],
                    changes: list[Change]) -> None:
        raise AssertionError("renewal list never changes a device")


@dataclass
class RenewalSet:
    ca_fingerprint: str
    url: str
    challenge: Secret | None = None
    name: str = "renewal set"

    async def read(self, ctx: DeviceContext) -> list[EnrollmentProfile]:
        ctx.require("a SCEP renewal profile", PROFILES_SET,
                    {"Fingerprint": self.ca_fingerprint, "URL": self.url})
        profiles = await ctx.xapi.profiles_list()
        ctx.fact("profiles", [p.to_dict() for p in profiles])
        return profiles

    def diff(self, ctx: DeviceContext, state: list[EnrollmentProfile]) -> list[Change]:
        challenge, note = renewal_challenge(ctx, self.challenge)
        if note:
            ctx.result.message = note
        same = [p for p in state if p.fingerprint == self.ca_fingerprint and p.url == self.url]
        if same and challenge is None:
            return []
        return [Change("profile.set", self.ca_fingerprint,
                       self.url + (" (without challenge)" if note else ""))]

    async def apply(self, ctx: DeviceContext, state: list[EnrollmentProfile],
                    changes: list[Change]) -> None:
        challenge, note = renewal_challenge(ctx, self.challenge)
        await ctx.xapi.profiles_set(self.ca_fingerprint, self.url, challenge)
        ctx.step("renewal profile set", self.ca_fingerprint + (f"; {note}" if note else ""))
        changes[0].applied = True


@dataclass
class RenewalDelete:
    ca_fingerprint: str
    name: str = "renewal delete"

    async def read(self, ctx: DeviceContext) -> list[EnrollmentProfile]:
        ctx.require("a SCEP renewal profile", PROFILES_DELETE,
                    {"Fingerprint": self.ca_fingerprint})
        return await ctx.xapi.profiles_list()

    def diff(self, ctx: DeviceContext, state: list[EnrollmentProfile]) -> list[Change]:
        if any(p.fingerprint == self.ca_fingerprint for p in state):
            return [Change("profile.delete", self.ca_fingerprint, "")]
        return []

    async def apply(self, ctx: DeviceContext, state: list[EnrollmentProfile],
                    changes: list[Change]) -> None:
        await ctx.xapi.profiles_delete(self.ca_fingerprint)
        changes[0].applied = True
