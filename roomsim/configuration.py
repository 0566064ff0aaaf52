"""The simulated configuration tree (`xConfiguration`): its value spaces, the getxml view,
and `<Configuration>` documents sent to putxml."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass

from certfleet.fleet.xapi.releases import NodeSpec

from .xml_wire import NO_ACTION, Segment, action_error, ensure_path, leaf, sort_tree


@dataclass(frozen=True)
class ConfigLeaf:
    """One configuration leaf. `key` is its path, e.g. `Network[1]/IEEE8021X/Mode`."""

    key: str
    default: str
    literals: tuple[str, ...] | None = None
    max_len: int = 0
    hidden: bool = False

    @property
    def segments(self) -> list[Segment]:
        return [Segment.parse(p) for p in self.key.split("/")]

    @property
    def value_space_ref(self) -> str:
        if self.literals == ("Off", "On"):
            return "/Valuespace/TTPAR_OnOff"
        if self.literals == ("False", "True"):
            return "/Valuespace/TTPAR_TrueFalse"
        if self.literals is not None:
            return "/Valuespace/TTPAR_" + "_".join(v.replace("+", "") for v in self.literals)
        return f"/Valuespace/STR_0_{self.max_len}"

    def canonical(self, value: str) -> str | None:
        """The stored form of `value`, or None when it is outside the value space.
        Literals match case-insensitively (tolerant choice: not confirmed on devices)."""
        if self.literals is not None:
            wanted = value.strip().lower()
            return next((v for v in self.literals if v.lower() == wanted), None)
        return value if len(value) <= self.max_len else None


_ON_OFF = ("Off", "On")
SCHEMA: dict[str, ConfigLeaf] = {
    leaf_.key: leaf_
    for leaf_ in (
        ConfigLeaf("Network[1]/IEEE8021X/Mode", "Off", _ON_OFF),
        ConfigLeaf("Network[1]/IEEE8021X/Eap/Md5", "On", _ON_OFF),
        ConfigLeaf("Network[1]/IEEE8021X/Eap/Peap", "On", _ON_OFF),
        ConfigLeaf("Network[1]/IEEE8021X/Eap/Tls", "On", _ON_OFF),
        ConfigLeaf("Network[1]/IEEE8021X/Eap/Ttls", "On", _ON_OFF),
        ConfigLeaf("Network[1]/IEEE8021X/Identity", "", max_len=64),
        ConfigLeaf("Network[1]/IEEE8021X/AnonymousIdentity", "", max_len=64),
        ConfigLeaf("Network[1]/IEEE8021X/Password", "", max_len=50, hidden=True),
        ConfigLeaf("Network[1]/IEEE8021X/TlsVerify", "Off", _ON_OFF),
        ConfigLeaf("Network[1]/IEEE8021X/UseClientCertificate", "Off", _ON_OFF),
        ConfigLeaf(
            "Peripherals/Security/Certificates/SyncToPeripherals/Enabled",
            "True",
            ("False", "True"),
        ),
        ConfigLeaf("Security/Enrollment/KeySize", "2048", ("2048", "3072", "4096")),
        ConfigLeaf("NetworkServices/HTTP/Mode", "HTTPS", ("HTTP+HTTPS", "HTTPS", "Off")),
    )
}
# Positions (depth, name) of list nodes, so `<Network>` without item= means item 1.
_LIST_NODES = {
    (depth, seg.name)
    for leaf_ in SCHEMA.values()
    for depth, seg in enumerate(leaf_.segments)
    if seg.item is not None
}


def defaults() -> dict[str, str]:
    return {key: leaf_.default for key, leaf_ in SCHEMA.items()}


# A device's view of its release: the release's node for a configuration key, or None when
# its release or product lacks it.
NodeFor = Callable[[str], NodeSpec | None]


def config_tree(
    config: dict[str, str], root: ET.Element, node_for: NodeFor | None = None
) -> ET.Element:
    """Fill `root` (a `<Configuration product=...>` element) with every leaf (that the
    device's release and product have, with `node_for`)."""
    for key, spec in SCHEMA.items():
        if node_for is not None and node_for(key) is None:
            continue
        node = ensure_path(root, spec.segments, max_occurrence="1")
        node.set("valueSpaceRef", spec.value_space_ref)
        node.text = "" if spec.hidden else config.get(key, spec.default)
    return sort_tree(root)


@dataclass(frozen=True)
class _Setting:
    key: str
    path: list[ET.Element]  # the request elements from the first level down to the leaf
    value: str


def settings_of(document: ET.Element) -> list[tuple[str, str]]:
    """(key, value) of every setting in a `<Configuration>` document, as sent."""
    settings: list[_Setting] = []
    for child in document:
        _collect(child, [child], settings)
    return [(s.key, s.value) for s in settings]


def accepts(key: str, value: str, node_for: NodeFor | None) -> str | None:
    """The stored form of `value` for `key`, None when roomsim's or the release's value
    space refuses it."""
    canonical = SCHEMA[key].canonical(value)
    if canonical is None or node_for is None:
        return canonical
    node = node_for(key)
    if node is not None and node.value is not None and not node.value.accepts(canonical):
        return None
    return canonical


def apply_document(
    config: dict[str, str], document: ET.Element, node_for: NodeFor | None = None
) -> tuple[ET.Element, bool]:
    """Apply a `<Configuration>` putxml document to `config`; with `node_for`, paths and
    values the device's release or product lacks are refused as a device refuses them.

    Returns (reply, changed). All settings are validated first; on any error nothing is
    applied and the reply names the bad path or the illegal values."""
    settings: list[_Setting] = []
    for child in document:
        _collect(child, [child], settings)
    if not settings:
        return action_error(NO_ACTION), False

    unknown = [s for s in settings if s.key not in SCHEMA
               or (node_for is not None and node_for(s.key) is None)]
    if unknown:
        reply = ET.Element("Configuration", status="Error")
        ET.SubElement(reply, "Reason").text = "No match on address expression"
        xpath = "/".join(_label(e) for e in unknown[0].path)
        ET.SubElement(reply, "XPath").text = f"Configuration/{xpath}"
        return reply, False

    values = [(s, accepts(s.key, s.value, node_for)) for s in settings]
    illegal = [s for s, value in values if value is None]
    if illegal:
        reply = ET.Element("Configuration")
        for setting in illegal:
            segments = SCHEMA[setting.key].segments
            parent = ensure_path(reply, segments[:-1], max_occurrence=None)
            leaf(parent, segments[-1].name, "Illegal value", error="True")
        return reply, False

    changed = False
    for setting, value in values:
        if value is not None and config.get(setting.key) != value:
            config[setting.key] = value
            changed = True
    reply = ET.Element("Configuration")
    ET.SubElement(reply, "Success")
    return reply, changed


def _collect(element: ET.Element, path: list[ET.Element], out: list[_Setting]) -> None:
    if len(element) == 0:
        out.append(_Setting(_key(path), path, element.text or ""))
        return
    for child in element:
        _collect(child, [*path, child], out)


def _key(path: list[ET.Element]) -> str:
    parts = []
    for depth, element in enumerate(path):
        item = element.get("item")
        if item is None and (depth, element.tag) in _LIST_NODES:
            item = "1"
        parts.append(element.tag if item is None else f"{element.tag}[{item.strip()}]")
    return "/".join(parts)


def _label(element: ET.Element) -> str:
    item = element.get("item")
    return element.tag if item is None else f"{element.tag}[{item}]"
