"""`xCommand Network Wifi Configure | List | Delete` (value spaces from the RoomOS 26.4.1
schema, §1.6).

Reply shapes (not confirmed on a device): Configure answers `<WifiConfigureResult
status="OK"><ProfileID>n</ProfileID>`; List answers `<WifiListResult status="OK"><Profile
item="n"><ProfileID/><SSID/><Type/><Identity/><AllowMissingCA/><Connect/></Profile>…`. No
reply holds a Wi-Fi password."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable

from .commands import Args, CommandContext, CommandFailed, CommandRegistry, Param
from .network import ALL_WIFI_TYPES, CONNECT_MODES, WifiProfile, canonical_wifi_type
from .xml_wire import leaf


def _profile_id(value: str) -> int:
    if not value.strip().isdigit():
        raise CommandFailed(f"Invalid ProfileID {value!r}: give the number Wifi List shows")
    return int(value)


def register(registry: CommandRegistry) -> None:
    wifi = "Network/Wifi/"

    @registry.register(
        wifi + "Configure",
        Param("SSID", required=True, max_len=255),
        Param("Type", required=True, literals=ALL_WIFI_TYPES),
        Param("Identity", max_len=255),
        Param("Password", max_len=255),
        Param("AnonymousIdentity", max_len=255),
        Param("AllowMissingCA", default="False", literals=("False", "True")),
        Param("Connect", default="Auto", literals=CONNECT_MODES),
    )
    def configure(ctx: CommandContext, args: Args) -> Iterable[ET.Element]:
        """One profile per SSID: configuring a known SSID replaces its profile (same ID)
        and makes it the most recent one."""
        ssid = args.get("SSID")
        if not ssid:
            raise CommandFailed("SSID must not be empty")
        profiles = ctx.device.wifi
        old = next((p for p in profiles if p.ssid == ssid), None)
        if old is not None:
            profiles.remove(old)
        new_id = max((p.profile_id for p in profiles), default=0) + 1
        profile = WifiProfile(
            profile_id=old.profile_id if old else new_id,
            ssid=ssid,
            wifi_type=canonical_wifi_type(args.get("Type")),
            identity=args.get("Identity"),
            password=args.get("Password"),
            anonymous_identity=args.get("AnonymousIdentity"),
            allow_missing_ca=args.get("AllowMissingCA") == "True",
            connect=args.get("Connect") or "Auto",  # before 26.1.1: no Connect, joins now
        )
        profiles.append(profile)
        ctx.device.save()
        element = ET.Element("ProfileID")
        element.text = str(profile.profile_id)
        return [element]

    @registry.register(wifi + "List")
    def wifi_list(ctx: CommandContext, args: Args) -> Iterable[ET.Element]:
        items = []
        for number, profile in enumerate(sorted(ctx.device.wifi, key=lambda p: p.profile_id), 1):
            item = ET.Element("Profile", item=str(number), maxOccurrence="n")
            leaf(item, "AllowMissingCA", str(profile.allow_missing_ca))
            leaf(item, "Connect", profile.connect)
            leaf(item, "Identity", profile.identity)
            leaf(item, "ProfileID", str(profile.profile_id))
            leaf(item, "SSID", profile.ssid)
            leaf(item, "Type", profile.wifi_type)
            items.append(item)
        return items

    @registry.register(wifi + "Delete", Param("ProfileID", max_len=16), Param("SSID", max_len=255))
    def wifi_delete(ctx: CommandContext, args: Args) -> None:
        """By ProfileID, by SSID, or by both (then they must name the same profile)."""
        given_id, ssid = args.get("ProfileID"), args.get("SSID")
        if not given_id and not ssid:
            raise CommandFailed("Give the ProfileID or the SSID of the profile to delete")
        wanted = _profile_id(given_id) if given_id else None
        for profile in ctx.device.wifi:
            if (wanted is None or profile.profile_id == wanted) and (
                not ssid or profile.ssid == ssid
            ):
                ctx.device.wifi.remove(profile)
                ctx.device.save()
                return
        raise CommandFailed("No such Wi-Fi profile")
