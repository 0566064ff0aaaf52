"""fleet.plans.enroll — on-device SCEP enrollment, across the fleet.

The device makes its own key and enrolls with the SCEP server (``Services Enrollment SCEP
Request``); certfleet drives it and finishes the job the device does not do by itself:

1. enroll (the new certificate lands on the device unused);
2. put the SCEP CA on the device's CA list — enrollment does not (reference §1.3);
3. activate the new certificate for the purposes and verify it is in use;
4. optionally set the device's renewal profile for that CA;
5. only then delete what it superseded (as ``install`` does).

If anything after step 1 fails, the new certificate is removed, a CA that was added is removed
again and the old certificate is re-activated: a failed enrollment leaves the device as it was.
A wrong CA fingerprint is caught before any device is touched, and reported per device.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cryptography import x509

from ..errors import DeviceError, ParameterError, ScepError, VerifyError
from ..inventory import Device
from ..pki.certs import CaCertificate
from ..results import Change
from ..secrets import Secret
from ..xapi.commands import CertificateInfo, EnrollmentProfile, ScepRequest
from .base import DeviceContext
from .install import activate_verified, active_leaves, require_purposes
from .renewal import PROFILES_SET, renewal_challenge

__all__ = ["SCEP_REQUEST", "Enroll", "EnrollState", "ScepServer", "ScepTarget", "scep_target"]

SCEP_REQUEST = ("Security", "Certificates", "Services", "Enrollment", "SCEP", "Request")


@dataclass(frozen=True)
class ScepTarget:
    """The SCEP server as certfleet found it (GetCACert), checked against the fingerprint."""

    url: str
    ca: CaCertificate | None
    #: set when the server's CA does not match the fingerprint the admin gave
    problem: str | None = None

    @property
    def device_fingerprint(self) -> str:
        # The Cisco DevNet macro passes the SHA-1 of the signing CA; DHCP option 43 takes
        # SHA-1 or SHA-256. SHA-1 is what every firmware with SCEP Request accepts.
        assert self.ca is not None
        return self.ca.sha1


@dataclass(frozen=True)
class ScepServer:
    """The SCEP server as the admin gave it: its URL and its CA's fingerprint."""

    url: str
    ca_fingerprint: str

    async def find(self) -> ScepTarget:
        """Ask the server for its CA (GetCACert), to push it and to check the fingerprint.
        A server that cannot be asked is every device's failure, not an input error."""
        from ..pki.scep import ScepClient

        client = ScepClient(self.url)
        try:
            info = await client.get_ca()
        except ScepError as exc:
            return ScepTarget(url=self.url, ca=None,
                              problem=f"{exc.message}; nothing was changed on the device")
        finally:
            await client.aclose()
        return scep_target(self.url, self.ca_fingerprint, info.certs)


@dataclass
class EnrollState:
    services: list[CertificateInfo]
    cas: list[CertificateInfo]
    profiles: list[EnrollmentProfile]


@dataclass
class Enroll:
    """Enroll by SCEP where due. ``scep`` is the server as given (its CA is looked up in
    :meth:`open`, in the run's event loop) or a target already found."""

    scep: ScepServer | ScepTarget
    purposes: tuple[str, ...]
    challenge: Callable[[Device], Secret | None]
    renewal_profile: bool = False
    renew_before: dt.timedelta = dt.timedelta(days=30)
    force: bool = False
    #: reboot each device after a new enrollment (RoomOS applies some 802.1X changes only
    #: after a reboot) and wait until it is back and still shows the certificate in use
    reboot: bool = False
    reboot_timeout: float = 300.0
    name: str = "enroll"
    _target: ScepTarget | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.scep, ScepTarget):
            self._target = self.scep

    @property
    def url(self) -> str:
        return self.scep.url

    @property
    def target(self) -> ScepTarget:
        if self._target is None:
            raise RuntimeError("Enroll.open() was not called")
        return self._target

    def check(self, devices: Sequence[Device], journal: object) -> None:
        """Before any device is contacted: the challenge can be had for every device."""
        check = getattr(self.challenge, "check", None)
        if check is not None:
            check(devices)

    async def open(self) -> None:
        if isinstance(self.scep, ScepServer):
            self._target = await self.scep.find()

    async def aclose(self) -> None:
        """Nothing to release: the SCEP client is closed as soon as the CA is known."""

    def _issued_by_ca(self, cert: CertificateInfo) -> bool:
        return self.target.ca is not None and cert.issuer == self.target.ca.subject

    async def read(self, ctx: DeviceContext) -> EnrollState:
        # 9.15 and 10.19 have no SCEP at all: left alone, with the release it needs
        ctx.require("SCEP enrollment", SCEP_REQUEST,
                    {"URL": self.url, "Fingerprint": "0" * 40, "CommonName": "cn"})
        if self.renewal_profile:
            ctx.require("a SCEP renewal profile", PROFILES_SET,
                        {"URL": self.url, "Fingerprint": "0" * 40})
        require_purposes(ctx, self.purposes)
        services = await ctx.xapi.services_show()
        cas = await ctx.xapi.ca_show()
        profiles = await ctx.xapi.profiles_list()
        ctx.fact("profiles", [p.to_dict() for p in profiles])
        ctx.result.fingerprints_before = sorted(set(active_leaves(services, self.purposes)
                                                    .values()))
        return EnrollState(services=services, cas=cas, profiles=profiles)

    def _enroll_reason(self, ctx: DeviceContext, state: EnrollState) -> str | None:
        if self.force:
            return "forced"
        active = active_leaves(state.services, self.purposes)
        by_fp = {c.fingerprint: c for c in state.services}
        for purpose in self.purposes:
            fp = active.get(purpose)
            if fp is None:
                return f"no certificate in use for {purpose}"
            cert = by_fp[fp]
            if not self._issued_by_ca(cert):
                return f"the {purpose} certificate is not from this SCEP CA ({cert.issuer})"
            days = cert.days_left(ctx.now)
            if days is None or days * 86400 < self.renew_before.total_seconds():
                return f"the {purpose} certificate expires soon"
        return None

    def diff(self, ctx: DeviceContext, state: EnrollState) -> list[Change]:
        if self.target.problem:
            raise ScepError(self.target.problem, device=ctx.device.name)
        ca = self.target.ca
        assert ca is not None
        changes: list[Change] = []
        reason = self._enroll_reason(ctx, state)
        if reason:
            rendered = ctx.device.certificate.render(ctx.device)
            # before anything is sent: lengths differ by release (the challenge is not asked
            # for yet: a one-time one is spent by its first use)
            self._check_request(ctx, self._request(ctx.device, None))
            changes.append(Change("scep.enroll", self.target.url,
                                  f"{reason} → enroll CN={rendered.common_name}"))
        if not any(ca.matches(c.fingerprint) for c in state.cas):
            changes.append(Change("ca.add", ca.sha1, ca.subject))
        if self.renewal_profile and not any(ca.matches(p.fingerprint) for p in state.profiles):
            changes.append(Change("profile.set", ca.sha1, self.target.url))
        if self.reboot and any(c.action == "scep.enroll" for c in changes):
            changes.append(Change("reboot", ctx.device.name, "restart and wait until back"))
        return changes

    def _check_request(self, ctx: DeviceContext, request: ScepRequest) -> None:
        """The SCEP Request's fields against this release's limits (11.24: 128 characters for
        every field; 26.x: CommonName 64, CountryName 2, URL 256): a clear failure naming
        field, limit and release, before the device is asked for anything."""
        fw = ctx.firmware
        if fw is None:
            return
        why = fw.problem(SCEP_REQUEST, request.params())
        if why is not None:
            raise ParameterError(
                f"the SCEP request does not fit RoomOS {fw.label} (release model "
                f"{fw.model.release}): {why}; nothing was sent",
                device=ctx.device.name, xpath="/".join(SCEP_REQUEST), reason=why)

    def _request(self, device: Device, challenge: Secret | None) -> ScepRequest:
        rendered = device.certificate.render(device)
        subject = dict(rendered.subject)
        ous = tuple(v for k, v in rendered.subject if k == "OU")
        return ScepRequest(
            url=self.target.url,
            ca_fingerprint=self.target.device_fingerprint,
            common_name=rendered.common_name,
            challenge=challenge,
            country=subject.get("C", ""),
            state=subject.get("ST", ""),
            locality=subject.get("L", ""),
            organization=subject.get("O", ""),
            organizational_units=ous,
            san_dns=rendered.san_dns,
            san_email=rendered.san_email,
            san_ip=rendered.san_ip,
            san_uri=rendered.san_uri,
        )

    async def apply(self, ctx: DeviceContext, state: EnrollState, changes: list[Change]) -> None:
        xapi = ctx.xapi
        ca = self.target.ca
        assert ca is not None
        by_action = {c.action: c for c in changes}
        new_fp: str | None = None
        added_ca = False
        # Asked for once per device (a one-time challenge from the CA is spent by its first
        # use), just before the request that uses it; the renewal profile gets the same one.
        challenge: list[Secret | None] = []
        try:
            if "scep.enroll" in by_action:
                challenge.append(self.challenge(ctx.device))
                new_fp = await xapi.scep_request(self._request(ctx.device, challenge[0]))
                ctx.step("enrolled", new_fp)
                by_action["scep.enroll"].applied = True
            if "ca.add" in by_action:
                await xapi.ca_add(ca.pem)
                added_ca = True
                ctx.step("ca added", ca.sha1)
                by_action["ca.add"].applied = True
            if new_fp is not None:
                notes = await activate_verified(ctx, new_fp, self.purposes, state.services)
                if notes:
                    ctx.result.message = "; ".join(notes)
        except Exception:
            await self._undo(ctx, new_fp, added_ca, by_action)
            raise
        if "profile.set" in by_action:
            if not challenge:
                challenge.append(self.challenge(ctx.device))
            sent, note = renewal_challenge(ctx, challenge[0])
            await xapi.profiles_set(ca.sha1, self.target.url, sent)
            ctx.step("renewal profile set", ca.sha1 + (f"; {note}" if note else ""))
            by_action["profile.set"].applied = True
            if note:
                by_action["profile.set"].detail += " (without challenge)"
                ctx.result.message = "; ".join(m for m in (ctx.result.message, note) if m)
        if "reboot" in by_action and new_fp is not None:
            await self._reboot_and_wait(ctx, new_fp)
            by_action["reboot"].applied = True

    async def _reboot_and_wait(self, ctx: DeviceContext, new_fp: str) -> None:
        """Restart, see the device go away and come back, and check the certificate is still
        in use for the purposes afterwards."""
        await ctx.xapi.reboot()
        ctx.step("reboot", "requested")
        probe = ctx.peer_certificate
        if probe is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.reboot_timeout
        went_down = False
        while loop.time() < deadline:
            try:
                await probe()
                if went_down:
                    break
            except DeviceError:
                went_down = True
            await asyncio.sleep(0.5)
        else:
            raise VerifyError(
                f"the device did not come back within {self.reboot_timeout:g}s after the reboot"
            )
        after = await ctx.xapi.services_show()  # a new session: the old one died with it
        in_use = active_leaves(after, self.purposes)
        missing = [p for p in self.purposes if in_use.get(p) != new_fp]
        if missing:
            raise VerifyError(f"after the reboot {new_fp} is not in use for {', '.join(missing)}")
        ctx.step("back after reboot", new_fp)

    async def _undo(self, ctx: DeviceContext, new_fp: str | None, added_ca: bool,
                    by_action: dict[str, Change]) -> None:
        """After a failure: the device as it was (activate_verified re-activated the old one)."""
        if new_fp is not None:
            try:
                remaining = {c.fingerprint for c in await ctx.xapi.services_show()}
                if new_fp in remaining:
                    await ctx.xapi.services_delete(new_fp)
                    ctx.step("removed", new_fp)
                by_action["scep.enroll"].applied = False
            except Exception as exc:
                ctx.step("undo failed", f"delete {new_fp}: {exc}")
        if added_ca and self.target.ca is not None:
            try:
                await ctx.xapi.ca_delete(self.target.ca.sha1)
                ctx.step("ca removed", self.target.ca.sha1)
                by_action["ca.add"].applied = False
            except Exception as exc:
                ctx.step("undo failed", f"CA delete: {exc}")


def scep_target(
    url: str, given_fingerprint: str, certs: tuple[x509.Certificate, ...]
) -> ScepTarget:
    """Match the server's CA certificates against the fingerprint the admin gave."""
    cas = [CaCertificate.from_cert(c, source=url) for c in certs]
    for ca in cas:
        if ca.matches(given_fingerprint):
            return ScepTarget(url=url, ca=ca)
    shown = ", ".join(f"{c.subject or '(no subject)'} SHA-256 {c.sha256}" for c in cas)
    return ScepTarget(
        url=url,
        ca=cas[0] if cas else None,
        problem=(f"CA fingerprint mismatch: the SCEP server at {url} presents {shown}, not "
                 f"{given_fingerprint}; nothing was changed on the device"),
    )
