"""roomsim's reply writer gives, byte for byte, what xml.etree's indent + tostring give."""

from __future__ import annotations

import copy
import random
import xml.etree.ElementTree as ET

import pytest

from certfleet.roomsim.device import xpath_fault
from certfleet.roomsim.xml_wire import action_error, serialize

TRICKY = ["", " ", "\n  ", "plain", "a & b < c > d", 'say "hi"', "tab\there", "line\nbreak",
          "cr\rhere", "caf\u00e9 \u2603", "  padded  ", "-----BEGIN CERTIFICATE-----\nMII=\n"]


def reference(root: ET.Element) -> bytes:
    """The writer as it was: xml.etree indents the tree in place, then writes it."""
    tree = copy.deepcopy(root)
    ET.indent(tree, space="  ")
    text = ET.tostring(tree, encoding="unicode").replace(" />", "/>")
    return f'<?xml version="1.0"?>\n{text}\n'.encode()


def random_tree(rng: random.Random, depth: int = 0) -> ET.Element:
    element = ET.Element(rng.choice(["Status", "Details", "Item", "X"]),
                         {k: rng.choice(TRICKY) for k in rng.sample(["item", "b", "status"],
                                                                    rng.randint(0, 3))})
    element.text = rng.choice([None, *TRICKY])
    if depth < 5:
        for _ in range(rng.choice([0, 0, 1, 2, 4])):
            child = random_tree(rng, depth + 1)
            child.tail = rng.choice([None, None, *TRICKY])
            element.append(child)
    return element


def test_random_trees_with_awkward_text_tails_and_attributes():
    rng = random.Random(18)
    for _ in range(2000):
        root = random_tree(rng)
        before = ET.tostring(root)
        assert serialize(root) == reference(root)
        assert ET.tostring(root) == before  # the reply tree is written, not changed


def test_replies_the_simulator_builds(sim):
    device = sim.devices["room-001"]
    trees = [device.getxml(p) for p in ("Status", "Configuration", "Status/SystemUnit",
                                        "Configuration/Nothing[2]")]
    trees += [xpath_fault(), action_error("No action detected in document")]
    for tree in trees:
        assert serialize(tree) == reference(tree)


def test_a_root_tail_and_deep_nesting():
    root = node = ET.Element("Top")
    for level in range(80):  # deeper than the writer's precomputed indents
        node = ET.SubElement(node, f"L{level}")
    node.text = "bottom"
    root.tail = " after & "
    assert serialize(root) == reference(root)


@pytest.mark.parametrize("unusual", ["comment", "namespace", "number"])
def test_trees_xml_etree_writes_itself(unusual):
    root = ET.Element("Command")
    if unusual == "comment":
        root.append(ET.Comment(" a comment "))
    elif unusual == "namespace":
        ET.SubElement(root, "{urn:x}Named", {"{urn:x}attr": "v"})
    else:
        ET.SubElement(root, "Count").text = 3  # type: ignore[assignment]
    if unusual == "number":
        with pytest.raises(TypeError):
            reference(root)
        with pytest.raises(TypeError):
            serialize(root)
    else:
        assert serialize(root) == reference(root)


@pytest.mark.parametrize("location", [
    "Status/SystemUnit", "/Status/SystemUnit/Software/Version", "status/SYSTEMUNIT/Hardware",
    "Status/Network", "Status/Network/1/IEEE8021X", "Status/network[1]/Wifi",
    "Status/Network[2]", "Status/Nothing", "Status/SystemUnit[1]", "Status",
])
async def test_getxml_of_a_part_of_status_is_that_part_of_the_whole_tree(
    sim_factory, monkeypatch, location
):
    from certfleet.roomsim import status
    from certfleet.roomsim.device import SimDevice
    from certfleet.roomsim.xml_wire import parse_path, select

    monkeypatch.setattr(SimDevice, "uptime", property(lambda self: 4242))  # no second ticks
    fleet = sim_factory(devices=3, firmware="mix")
    await fleet.start()
    try:
        for device in fleet.devices.values():
            segments = parse_path(location)
            assert segments
            whole = status.status_tree(device, device._root("Status"))
            expected = whole if len(segments) == 1 else select(whole, segments[1:])
            if segments[0].item is not None or not len(expected):
                expected = device._root("EmptyResult")
            assert serialize(device.getxml(location)) == serialize(expected), device.name
    finally:
        await fleet.stop()
