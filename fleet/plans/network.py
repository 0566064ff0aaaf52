"""fleet.plans.network — wired 802.1X and Wi-Fi EAP-TLS, without stranding a room.

Validate first, change last: a device with no certificate active for 802.1X, or (when the
server is to be verified) no CA on its list, is refused unless forced — it would lose the
network and need a truck roll. Wired 802.1X settings are written with ``Mode`` last, then the
device's ``IEEE8021X Status`` is read back; if it does not come up, the previous settings are
restored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import CertificateCheckError, DeviceSkipped, VerifyError
from ..inventory import Device
from ..results import Change
from ..xapi.commands import CertificateInfo
from ..xapi.transport import ParamValue
from .base import DeviceContext
from .install import active_leaves

__all__ = ["WIFI_EAP_TLS_TYPES", "Dot1x", "NetworkState", "Wifi", "wifi_parameters"]

_DOT1X = ("Network", 1, "IEEE8021X")
_WIFI = ("Network", "Wifi", "Configure")

#: the EAP-TLS value of Network Wifi Configure Type, newest name first: Enterprise-Tls from
#: 11.27.2.0, Wpa2-eap-tls from 10.19 to 26.4, Wpa-eap-tls on 9.15 (Cisco's schemas)
WIFI_EAP_TLS_TYPES = ("Enterprise-Tls", "Wpa2-eap-tls", "Wpa-eap-tls")


def wifi_parameters(ctx: DeviceContext) -> tuple[str, str | None]:
    """``(Type, Connect)`` for this device's release: the EAP-TLS type it has, and ``Connect:
    Auto`` only where the parameter exists (26.1.1 on). Without a known release: the newest."""
    fw = ctx.firmware
    if fw is None:
        return WIFI_EAP_TLS_TYPES[0], "Auto"
    wifi_type = fw.pick(_WIFI, "Type", WIFI_EAP_TLS_TYPES) or WIFI_EAP_TLS_TYPES[1]
    connect = "Auto" if fw.accepts(_WIFI, "Connect", "Auto") else None
    return wifi_type, connect


@dataclass
class NetworkState:
    services: list[CertificateInfo]
    cas: list[CertificateInfo]
    config: dict[str, str] = field(default_factory=dict)
    status: dict[str, Any] = field(default_factory=dict)


def _flatten(tree: Any, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(tree, dict):
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}/" if isinstance(value, dict)
                                else f"{prefix}{key}"))
    elif isinstance(tree, str):
        out[prefix.rstrip("/")] = tree
    return out


_SCEP_REQUEST = ("Security", "Certificates", "Services", "Enrollment", "SCEP", "Request")


def _guard(ctx: DeviceContext, state: NetworkState, *, need_ca: bool, force: bool) -> None:
    if force:
        return
    if "802.1X" not in active_leaves(state.services, ("802.1X",)):
        cannot_enroll = ctx.firmware.lacks(
            "SCEP enrollment", ctx.device.name, _SCEP_REQUEST,
            {"URL": "u", "Fingerprint": "0" * 40, "CommonName": "cn"}) if ctx.firmware else None
        if cannot_enroll:
            # its release is why it has none: left alone (not failed), saying what to do
            raise DeviceSkipped(
                f"no certificate is active for 802.1X, and the device cannot enroll one: "
                f"{cannot_enroll} (push-cert --purpose 802.1X first, or --force)",
                device=ctx.device.name)
        raise CertificateCheckError(
            "no certificate is active for 802.1X on the device: it would lose the network "
            "(enroll or push-cert --purpose 802.1X first, or --force)", device=ctx.device.name)
    if need_ca and not state.cas:
        raise CertificateCheckError(
            "the device has no CA on its list to verify the RADIUS server with: it would lose "
            "the network (push-ca the RADIUS CA first, or --force)", device=ctx.device.name)


def _has_dot1x_status(ctx: DeviceContext) -> bool:
    """9.15 and 10.19 have no ``Status Network IEEE8021X``: 802.1X cannot be seen coming up."""
    return ctx.firmware is None or ctx.firmware.has_status((*_DOT1X, "Status"))


async def _read(ctx: DeviceContext) -> NetworkState:
    services = await ctx.xapi.services_show()
    cas = await ctx.xapi.ca_show()
    config = await ctx.xapi.read_tree(("Configuration", *_DOT1X))
    status = (await ctx.xapi.read_tree(("Status", *_DOT1X))) if _has_dot1x_status(ctx) else {}
    return NetworkState(services=services, cas=cas, config=_flatten(config or {}),
                        status=status if isinstance(status, dict) else {})


@dataclass
class Dot1x:
    identity: Callable[[Device], str]
    tls_verify: bool = True
    force: bool = False
    settle_seconds: float = 10.0
    name: str = "dot1x"

    def desired(self, device: Device, ctx: DeviceContext | None = None) -> dict[str, str]:
        wanted = {
            "Eap/Tls": "On",
            "UseClientCertificate": "On",
            "TlsVerify": "On" if self.tls_verify else "Off",
            "Identity": self.identity(device),
            "Mode": "On",  # last: the moment the port starts 802.1X
        }
        fw = ctx.firmware if ctx is not None else None
        if fw is None:
            return wanted
        # only the settings this release and product have (Mode is checked in read)
        return {key: value for key, value in wanted.items()
                if fw.has_configuration((*_DOT1X, *key.split("/")))}

    async def read(self, ctx: DeviceContext) -> NetworkState:
        if ctx.firmware is not None:
            ctx.firmware.require_configuration("wired 802.1X", ctx.device.name,
                                               (*_DOT1X, "Mode"))
        state = await _read(ctx)
        ctx.fact("ieee8021x", {"status": state.status.get("Status"),
                               "reason": state.status.get("Reason")})
        return state

    def diff(self, ctx: DeviceContext, state: NetworkState) -> list[Change]:
        _guard(ctx, state, need_ca=self.tls_verify, force=self.force)
        return [
            Change("config.set", f"Network 1 IEEE8021X {key.replace('/', ' ')}", value)
            for key, value in self.desired(ctx.device, ctx).items()
            if state.config.get(key) != value
        ]

    async def apply(self, ctx: DeviceContext, state: NetworkState, changes: list[Change]) -> None:
        wanted = self.desired(ctx.device, ctx)
        previous = {key: state.config.get(key, "") for key in wanted}
        written: list[str] = []
        try:
            for key, value in wanted.items():
                if state.config.get(key) == value:
                    continue
                await ctx.xapi.set_configuration((*_DOT1X, *key.split("/")), value)
                written.append(key)
                ctx.step("configured", f"IEEE8021X {key} = {value}")
            for change in changes:
                change.applied = True
            if not _has_dot1x_status(ctx):
                assert ctx.firmware is not None
                ctx.result.message = (
                    f"802.1X set, not verified: RoomOS {ctx.firmware.label} has no Status "
                    "Network IEEE8021X to show it coming up; check the switch port")
                return
            status = await self._settle(ctx)
            ctx.fact("ieee8021x", status)
            if status.get("status") not in ("Connected", "Associating"):
                raise VerifyError(
                    f"802.1X did not come up: status {status.get('status')!r}"
                    + (f" ({status['reason']})" if status.get("reason") else "")
                )
        except Exception as exc:
            await self._restore(ctx, previous, written)
            if isinstance(exc, VerifyError):
                exc.message += "; previous 802.1X settings restored"
            for change in changes:
                change.applied = False
            raise

    async def _settle(self, ctx: DeviceContext) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settle_seconds
        while True:
            status = await ctx.xapi.read_tree(("Status", *_DOT1X)) or {}
            value = status.get("Status") if isinstance(status, dict) else None
            if value == "Connected" or loop.time() >= deadline:
                return {"status": value, "reason": status.get("Reason") if isinstance(
                    status, dict) else None}
            await asyncio.sleep(0.5)

    async def _restore(self, ctx: DeviceContext, previous: dict[str, str],
                       written: Sequence[str]) -> None:
        # Mode first when restoring: stop 802.1X before putting the rest back
        for key in sorted(written, key=lambda k: k != "Mode"):
            try:
                await ctx.xapi.set_configuration((*_DOT1X, *key.split("/")), previous[key])
                ctx.step("restored", f"IEEE8021X {key} = {previous[key]}")
            except Exception as exc:
                ctx.step("restore failed", f"{key}: {exc}")


@dataclass
class Wifi:
    ssid: str
    identity: Callable[[Device], str]
    allow_missing_ca: bool = False
    force: bool = False
    name: str = "wifi"
    warnings: dict[str, str] = field(default_factory=dict)

    async def read(self, ctx: DeviceContext) -> NetworkState:
        wifi_type, _ = wifi_parameters(ctx)
        params: dict[str, ParamValue] = {"SSID": self.ssid, "Type": wifi_type}
        ctx.require("Wi-Fi EAP-TLS", _WIFI, params)  # some products have no Wi-Fi
        services = await ctx.xapi.services_show()
        cas = await ctx.xapi.ca_show()
        status = await ctx.xapi.read_tree(("Status", "Network", 1, "Wifi"))
        ctx.fact("wifi", status if isinstance(status, dict) else {})
        return NetworkState(services=services, cas=cas,
                            status=status if isinstance(status, dict) else {})

    def diff(self, ctx: DeviceContext, state: NetworkState) -> list[Change]:
        _guard(ctx, state, need_ca=False, force=self.force)
        notes = []
        if self.allow_missing_ca:
            notes.append("AllowMissingCA True: the Wi-Fi server's certificate is NOT validated")
        elif not state.cas:
            notes.append("no CA on the device's list: it cannot validate the RADIUS server "
                         "(push-ca the RADIUS CA)")
        if notes:
            ctx.result.message = "; ".join(notes)
        if (state.status.get("SSID") == self.ssid and state.status.get("Type") in
                WIFI_EAP_TLS_TYPES and state.status.get("Status") == "Connected"):
            return []
        wifi_type, connect = wifi_parameters(ctx)
        return [Change("wifi.configure", self.ssid,
                       f"{wifi_type}, AllowMissingCA {self.allow_missing_ca}"
                       + (f", Connect {connect}" if connect else ""))]

    async def apply(self, ctx: DeviceContext, state: NetworkState, changes: list[Change]) -> None:
        wifi_type, connect = wifi_parameters(ctx)
        await ctx.xapi.wifi_configure(ssid=self.ssid, wifi_type=wifi_type,
                                      identity=self.identity(ctx.device),
                                      allow_missing_ca=self.allow_missing_ca, connect=connect)
        changes[0].applied = True
        status = await ctx.xapi.read_tree(("Status", "Network", 1, "Wifi"))
        ctx.fact("wifi", status if isinstance(status, dict) else {})
