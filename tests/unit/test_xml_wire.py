"""The client's putxml/getxml document format: building is injection-proof, parsing finds
every error form RoomOS uses and refuses hostile XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from certfleet.fleet.errors import BadReplyError, CommandError, ParameterError
from certfleet.fleet.xapi import _xml

CA_ADD = ("Security", "Certificates", "CA", "Add")


def test_command_document_shape() -> None:
    doc = _xml.build_command(
        ("Security", "Certificates", "Services", "Activate"),
        {"Fingerprint": "abc", "Purpose": "HTTPS"},
    )
    root = ET.fromstring(doc)
    leaf = root.find("Security/Certificates/Services/Activate")
    assert root.tag == "Command"
    assert leaf is not None and leaf.get("command") == "True"
    assert leaf.findtext("Fingerprint") == "abc"
    assert leaf.findtext("Purpose") == "HTTPS"


def test_body_is_lowercase_and_keeps_newlines() -> None:
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    root = ET.fromstring(_xml.build_command(CA_ADD, None, pem))
    body = root.find("Security/Certificates/CA/Add/body")
    assert body is not None and body.text == pem


def test_array_parameters_repeat_with_item_numbers() -> None:
    root = ET.fromstring(_xml.build_command(("A", "B"), {"SanDns": ["x.example", "y.example"]}))
    items = root.findall("A/B/SanDns")
    assert [(i.get("item"), i.text) for i in items] == [("1", "x.example"), ("2", "y.example")]


@given(st.text())
def test_hostile_values_cannot_change_the_document(value: str) -> None:
    # Any text (with <, &, quotes, newlines, fake closing tags) stays one text node.
    cleaned = "".join(c for c in value if c in "\t\n" or (c >= " " and c not in "\ufffe\uffff"))
    cleaned = "".join(c for c in cleaned if not 0xD800 <= ord(c) <= 0xDFFF)
    doc = _xml.build_command(("A", "B"), {"CommonName": cleaned}, cleaned)
    root = ET.fromstring(doc)
    leaf = root.find("A/B")
    assert leaf is not None
    assert [c.tag for c in leaf] == ["CommonName", "body"]
    assert (leaf.findtext("CommonName") or "") == cleaned.replace("\r", "\n")
    assert len(list(root.iter())) == 5


def test_path_parts_must_be_names() -> None:
    with pytest.raises(ParameterError):
        _xml.build_command(("A", "B><C"))


def test_configuration_document_with_index() -> None:
    doc = _xml.build_configuration(("Network", 1, "IEEE8021X", "Mode"), "On")
    root = ET.fromstring(doc)
    network = root.find("Network")
    assert network is not None and network.get("item") == "1"
    assert root.findtext("Network/IEEE8021X/Mode") == "On"


# --------------------------------------------------------------------------- replies

SERVICES_SHOW = b"""<?xml version="1.0"?>
<Command>
  <ServicesShowResult status="OK">
    <Details item="1" maxOccurrence="n">
      <Fingerprint>ce4eb947c2c17d58bbc08303bf278464beebf2af</Fingerprint>
      <IssuerName>/C=US/O=Let's Encrypt/CN=R3</IssuerName>
      <SubjectName>/CN=roomkitplus.aldaviva.com</SubjectName>
      <UsedFor>SIP, HTTPS server</UsedFor>
      <notAfter>Aug 08 03:04:26 2023 GMT</notAfter>
    </Details>
    <Details item="2" maxOccurrence="n">
      <Fingerprint>a053375bfe84e8b748782c7cee15827a6af5a405</Fingerprint>
      <UsedFor></UsedFor>
    </Details>
    <Format>Text</Format>
  </ServicesShowResult>
</Command>"""


def test_ok_reply_unwraps_result_and_lists_items() -> None:
    data = _xml.parse_command_reply(SERVICES_SHOW, ("Security", "Certificates", "Services", "Show"))
    assert data["Format"] == "Text"
    assert [d["Fingerprint"] for d in data["Details"]] == [
        "ce4eb947c2c17d58bbc08303bf278464beebf2af",
        "a053375bfe84e8b748782c7cee15827a6af5a405",
    ]
    assert data["Details"][0]["UsedFor"] == "SIP, HTTPS server"


def test_single_item_is_still_a_list() -> None:
    reply = b'<Command><CAShowResult status="OK"><Details item="1"><Fingerprint>ab</Fingerprint></Details></CAShowResult></Command>'
    data = _xml.parse_command_reply(reply, CA_ADD)
    assert data["Details"] == [{"Fingerprint": "ab"}]


def test_empty_ok_result() -> None:
    assert _xml.parse_command_reply(b'<Command><CAAddResult status="OK"/></Command>', CA_ADD) == {}


def test_action_error() -> None:
    reply = b'<?xml version="1.0"?>\n<ActionError>\n  <Reason>No action detected in document</Reason>\n</ActionError>'
    with pytest.raises(CommandError) as info:
        _xml.parse_command_reply(reply, CA_ADD)
    assert info.value.reason == "No action detected in document"
    assert info.value.xpath == "Security/Certificates/CA/Add"


def test_unknown_command_error_carries_device_xpath() -> None:
    reply = b'<Command><Result status="Error"><Reason>Unknown command</Reason><XPath>/Security/Certificates/Foo</XPath></Result></Command>'
    with pytest.raises(CommandError) as info:
        _xml.parse_command_reply(reply, CA_ADD)
    assert info.value.reason == "Unknown command"
    assert info.value.xpath == "/Security/Certificates/Foo"


def test_command_error_with_reason() -> None:
    reply = b'<Command><ServicesActivateResult status="Error"><Reason>No such certificate</Reason></ServicesActivateResult></Command>'
    with pytest.raises(CommandError, match="No such certificate"):
        _xml.parse_command_reply(reply, CA_ADD)


def test_parameter_error() -> None:
    reply = b'<Command><ServicesActivateResult status="ParameterError"/></Command>'
    with pytest.raises(ParameterError):
        _xml.parse_command_reply(reply, CA_ADD)


def test_illegal_configuration_value() -> None:
    reply = b'<Configuration><Network item="1"><IEEE8021X><Mode error="True">Illegal value</Mode></IEEE8021X></Network></Configuration>'
    with pytest.raises(ParameterError, match="Illegal value"):
        _xml.parse_configuration_reply(reply, ("Network", 1, "IEEE8021X", "Mode"))


def test_configuration_needs_success() -> None:
    _xml.parse_configuration_reply(b"<Configuration><Success/></Configuration>", ("A",))
    with pytest.raises(BadReplyError):
        _xml.parse_configuration_reply(b"<Configuration/>", ("A",))


@pytest.mark.parametrize(
    "content",
    [b"", b"   ", b"<<<%%%garbage", b"<Command><unclosed>", b"HTTP/1.1 200 OK\r\n"],
)
def test_garbage_is_a_bad_reply(content: bytes) -> None:
    with pytest.raises(BadReplyError):
        _xml.parse_command_reply(content, CA_ADD)


def test_billion_laughs_is_refused_not_expanded() -> None:
    bomb = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<Command><CAShowResult status="OK"><Details item="1"><Fingerprint>&lol3;</Fingerprint></Details></CAShowResult></Command>"""
    with pytest.raises(BadReplyError, match="hostile"):
        _xml.parse_command_reply(bomb, CA_ADD)


def test_external_entity_is_refused() -> None:
    xxe = b"""<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>
<Command><CAShowResult status="OK"><Details item="1"><Fingerprint>&e;</Fingerprint></Details></CAShowResult></Command>"""
    with pytest.raises(BadReplyError):
        _xml.parse_command_reply(xxe, CA_ADD)


def test_wrong_root_is_a_bad_reply() -> None:
    with pytest.raises(BadReplyError, match="expected <Command>"):
        _xml.parse_command_reply(b"<html><body>login</body></html>", CA_ADD)


def test_get_reply_navigates_to_the_path_and_items() -> None:
    reply = b"""<Status product="Cisco Codec" version="ce11" apiVersion="4">
<Network item="1" maxOccurrence="n"><IEEE8021X><Status>Off</Status></IEEE8021X></Network>
<Network item="2" maxOccurrence="n"><IEEE8021X><Status>Connected</Status></IEEE8021X></Network>
</Status>"""
    assert _xml.parse_get_reply(reply, ("Status", "Network", 2, "IEEE8021X")) == {
        "Status": "Connected"
    }
    assert _xml.parse_get_reply(reply, ("Status", "Audio")) is None
    assert _xml.getxml_location(("Status", "Network", 2, "IEEE8021X")) == "/Status/Network/IEEE8021X"


# ------------------------------------------------------------- size and depth bounds


def test_deeply_nested_elements_are_a_bad_reply_not_a_crash() -> None:
    deep = b"<Command>" + b"<a>" * 100_000 + b"</a>" * 100_000 + b"</Command>"
    with pytest.raises(BadReplyError, match="nested"):
        _xml.parse_command_reply(deep, CA_ADD)
    with pytest.raises(BadReplyError, match="nested"):
        _xml.parse_get_reply(deep.replace(b"Command", b"Status"), ("Status",))


def test_millions_of_elements_are_a_bad_reply_quickly() -> None:
    import time

    many = b"<Command><CAShowResult>" + b"<a/>" * 3_000_000 + b"</CAShowResult></Command>"
    started = time.process_time()
    with pytest.raises(BadReplyError, match="elements"):
        _xml.parse_command_reply(many, CA_ADD)
    # stopped at the bound, not after building 3M elements (that took ~20 s of CPU); CPU time,
    # generous, so a loaded machine cannot fail it
    assert time.process_time() - started < 5.0


def test_a_large_reply_within_the_bounds_still_parses() -> None:
    rows = b"".join(b'<Details item="%d"><Fingerprint>%040x</Fingerprint></Details>' % (i, i)
                    for i in range(1, 5001))
    data = _xml.parse_command_reply(b'<Command><CAShowResult status="OK">' + rows
                                    + b"</CAShowResult></Command>", CA_ADD)
    assert len(data["Details"]) == 5000
