"""The simulated status tree (`xStatus`) of a device."""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import TYPE_CHECKING

from .network import (
    DEPRECATED_WIFI_TYPES,
    active_wifi_profile,
    ieee8021x_status,
    wifi_status,
)
from .xml_wire import Segment, ensure_path, sort_tree

if TYPE_CHECKING:
    from .device import SimDevice

_NETWORK = Segment("Network", 1)


def _mac(serial: str) -> str:
    digest = hashlib.sha256(serial.encode("ascii")).digest()
    return ":".join(f"{b:02x}" for b in (b"\x00\x42" + digest[:4]))


def status_tree(device: SimDevice, root: ET.Element, only: str | None = None) -> ET.Element:
    """Fill `root` (a `<Status product=...>` element) with the device's status; with `only`
    (a top-level name such as "SystemUnit", any case) just that part, for a getxml that
    asks for nothing else (what getxml selects from the tree is the same either way)."""
    values: list[tuple[list[Segment], str]] = []

    def put(path: str, value: str, first: Segment | None = None) -> None:
        segments = [Segment(p) for p in path.split("/")]
        values.append(([first, *segments] if first else segments, value))

    wanted = None if only is None else only.lower()
    if wanted in (None, "network"):
        _network(device, put)
    if wanted in (None, "systemunit"):
        _system_unit(device, put)

    for segments, value in values:
        if device.status_node("/".join(map(str, segments))) is None:
            continue  # the release or product has no such status
        ensure_path(root, segments).text = value
    return sort_tree(root)


def _network(device: SimDevice, put: Callable[[str, str, Segment], None]) -> None:
    put("Ethernet/MacAddress", _mac(device.serial), _NETWORK)
    put("Ethernet/Speed", "1000full", _NETWORK)
    wired = ieee8021x_status(device)
    put("IEEE8021X/Reason", wired.reason, _NETWORK)
    put("IEEE8021X/Status", wired.status, _NETWORK)
    put("IPv4/Address", device.host, _NETWORK)
    wifi, profile = wifi_status(device), active_wifi_profile(device)
    put("Wifi/Reason", wifi.reason, _NETWORK)
    put("Wifi/SSID", profile.ssid if profile else "", _NETWORK)
    put("Wifi/Status", wifi.status, _NETWORK)
    put("Wifi/Type", _wifi_type(device, profile.wifi_type) if profile else "", _NETWORK)


def _system_unit(device: SimDevice, put: Callable[[str, str], None]) -> None:
    unit = "SystemUnit/"
    product = device.product
    put(unit + "BroadcastName", device.name)
    put(unit + "Hardware/HasWifi", str(device.firmware.has_wifi))
    put(unit + "Hardware/Module/CompatibilityLevel", "1")
    put(unit + "Hardware/Module/SerialNumber", device.serial)
    put(unit + "Hardware/UDI", f"{product.product_id} V01 {device.serial}")
    put(unit + "ProductId", product.product_id)
    put(unit + "ProductPlatform", product.platform)
    put(unit + "ProductType", "Cisco Codec")
    put(unit + "Software/DisplayName", _display_name(device.software_version))
    put(unit + "Software/Name", product.software_name)
    put(unit + "Software/ReleaseDate", "2025-01-15")
    put(unit + "Software/Version", device.software_version)
    put(unit + "Uptime", str(device.uptime))


def _wifi_type(device: SimDevice, stored: str) -> str:
    """The Wi-Fi Type status in the release's value space (26.4.1 still reports the older
    names there, e.g. Wpa2-eap-tls for a profile configured as Enterprise-Tls)."""
    node = device.status_node("Network[1]/Wifi/Type")
    if node is None or node.value is None or node.value.values is None:
        return stored
    if stored in node.value.values:
        return stored
    older = [old for old, new in DEPRECATED_WIFI_TYPES.items() if new == stored]
    return next((name for name in older if name in node.value.values), stored)


def _display_name(version: str) -> str:
    """`ce11.24.1.5.1234abcd` → `RoomOS 11.24.1.5 1234abcd`."""
    numbers, _, build = version.removeprefix("ce").rpartition(".")
    return f"RoomOS {numbers} {build}"
