# ruff: noqa: F811  (pytest fixtures imported from test_websocket_transport, used by name)
"""Readers that match the wire (issue 15 part 4).

* getxml of a path the device lacks answers a root ``<EmptyResult .../>`` (Cisco lab capture of
  ce11.20.1.7): that is "absent", not a bad reply;
* an ``ActionError`` anywhere in a reply is an error carrying its ``Reason``;
* every real "this device has no such command" answer — ActionError "No action detected in
  document", "Unknown command", JSON-RPC -32601, the cloud's 400 "... not supported" — is one
  error kind, :class:`NotSupportedError`, and a tolerant read treats each as absent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from certfleet.fleet.errors import CommandError, NotSupportedError, ParameterError
from certfleet.fleet.inventory import Device, load_inventory
from certfleet.fleet.secrets import Secret
from certfleet.fleet.xapi import _xml
from certfleet.fleet.xapi.commands import Xapi
from certfleet.fleet.xapi.transport import ParamValue

# the fake WebSocket device and its fixtures
from test_websocket_transport import (  # isort: skip
    FakeDevice,
    ca_file,  # noqa: F401
    device,  # noqa: F401
    error,
    fake,  # noqa: F401
    make,
    tls,  # noqa: F401
)

PROFILES_LIST = ("Security", "Certificates", "Services", "Enrollment", "Profiles", "List")
CA_ADD = ("Security", "Certificates", "CA", "Add")

EMPTY_RESULT = (b'<?xml version="1.0"?>\n<EmptyResult product="Cisco Codec" '
                b'version="ce11.20.1.7.0cb0d5a5e6c" apiVersion="4"/>\n')
NO_ACTION = (b'<?xml version="1.0"?>\n<ActionError>\n  <Reason>No action detected in document'
             b'</Reason>\n</ActionError>')
NESTED_ACTION_ERROR = (b'<?xml version="1.0"?>\n<Command><ActionError><Reason>Certificate '
                       b'rejected by policy</Reason></ActionError></Command>')
UNKNOWN_COMMAND = (b'<Command><Result status="Error"><Reason>Unknown command</Reason>'
                   b'<XPath>/Security/Certificates/Services/Enrollment/Profiles/List</XPath>'
                   b'</Result></Command>')


# ------------------------------------------------------------------- getxml EmptyResult


def test_empty_result_is_absent_not_a_bad_reply() -> None:
    assert _xml.parse_get_reply(EMPTY_RESULT, ("Status", "Network", 1, "Wifi")) is None
    assert _xml.parse_get_reply(EMPTY_RESULT, ("Configuration", "Peripherals", "Security",
                                               "Certificates", "SyncToPeripherals",
                                               "Enabled")) is None


def test_a_getxml_fault_is_still_an_error() -> None:
    fault = (b'<Fault><XPathError type="parsing"><ErrorCode>10</ErrorCode><Description>'
             b'Unexpected end</Description></XPathError></Fault>')
    with pytest.raises(Exception) as info:
        _xml.parse_get_reply(fault, ("Status", "SystemUnit"))
    assert not isinstance(info.value, NotSupportedError)


async def test_local_transport_reads_empty_result_as_none(tmp_path: Path) -> None:
    from fake_http import FakeHttp, Sent, reply

    from certfleet.fleet.xapi._http import HttpReply
    from certfleet.fleet.xapi.local import LocalTransport

    inv = tmp_path / "inv.yaml"
    inv.write_text("defaults: {username: admin, password: 'env:CF_TEST_PW', verify: insecure}\n"
                   "devices:\n  room-1: {host: 127.0.0.1, port: 8443}\n")
    room: Device = load_inventory(inv).devices["room-1"]

    def handler(request: Sent) -> HttpReply:
        if request.path == "/xmlapi/session/begin":
            return reply(204, cookies={"SessionId": "s-1"})
        if request.path == "/getxml":
            return reply(200, EMPTY_RESULT)
        return reply(204)

    async with LocalTransport(room, FakeHttp(handler), Secret("pw-123456")) as transport:
        assert await Xapi(transport).read_tree(("Status", "Network", 1, "Wifi")) is None


# ---------------------------------------------------------------- ActionError anywhere


def test_action_error_nested_in_command_is_an_error_with_its_reason() -> None:
    with pytest.raises(CommandError) as info:
        _xml.parse_command_reply(NESTED_ACTION_ERROR, CA_ADD)
    assert info.value.reason == "Certificate rejected by policy"
    assert "Certificate rejected by policy" in str(info.value)
    assert info.value.xpath == "Security/Certificates/CA/Add"
    assert not isinstance(info.value, NotSupportedError)


def test_action_error_deeper_down_is_an_error_too() -> None:
    reply = (b'<Command><CAAddResult status="OK"><ActionError><Reason>Too many certificates'
             b'</Reason></ActionError></CAAddResult></Command>')
    with pytest.raises(CommandError, match="Too many certificates"):
        _xml.parse_command_reply(reply, CA_ADD)


def test_action_error_in_a_configuration_reply() -> None:
    reply = (b'<Configuration><ActionError><Reason>No action detected in document</Reason>'
             b'</ActionError></Configuration>')
    with pytest.raises(NotSupportedError):
        _xml.parse_configuration_reply(reply, ("Network", 1, "IEEE8021X", "Mode"))


def test_action_error_without_reason_still_fails() -> None:
    with pytest.raises(CommandError, match="ActionError"):
        _xml.parse_command_reply(b"<Command><ActionError/></Command>", CA_ADD)


# ------------------------------------------------------- "the device has no such command"


@pytest.mark.parametrize("reply", [NO_ACTION, UNKNOWN_COMMAND],
                         ids=["action-error-no-action", "unknown-command"])
def test_xml_does_not_exist_forms_are_not_supported(reply: bytes) -> None:
    with pytest.raises(NotSupportedError) as info:
        _xml.parse_command_reply(reply, PROFILES_LIST)
    assert info.value.kind == "command"  # the documented JSON kind does not change


def test_other_command_errors_are_not_not_supported() -> None:
    reply = (b'<Command><ServicesActivateResult status="Error"><Reason>No such certificate'
             b'</Reason></ServicesActivateResult></Command>')
    with pytest.raises(CommandError) as info:
        _xml.parse_command_reply(reply, CA_ADD)
    assert not isinstance(info.value, NotSupportedError)
    with pytest.raises(ParameterError):
        _xml.parse_command_reply(b'<Command><X status="ParameterError"/></Command>', CA_ADD)


class XmlReplies:
    """Under :class:`Xapi`: answers each command with a scripted putxml reply body, read by
    the production XML reader (the HTTP part has its own tests)."""

    name = "local"

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.sent: list[str] = []

    async def command(self, path: Sequence[str], params: Mapping[str, ParamValue] | None = None,
                      body: str | None = None, *, idempotent: bool = False) -> dict[str, Any]:
        self.sent.append("/".join(path))
        return _xml.parse_command_reply(self.reply, path)


@pytest.mark.parametrize("reply", [NO_ACTION, UNKNOWN_COMMAND],
                         ids=["action-error-no-action", "unknown-command"])
async def test_tolerant_profiles_list_reads_every_xml_absent_form_as_empty(reply: bytes) -> None:
    transport = XmlReplies(reply)
    xapi = Xapi(transport)  # type: ignore[arg-type]
    assert await xapi.profiles_list(tolerant=True) == []
    with pytest.raises(NotSupportedError):
        await xapi.profiles_list()


async def test_tolerant_profiles_list_still_fails_on_a_real_error() -> None:
    xapi = Xapi(XmlReplies(NESTED_ACTION_ERROR))  # type: ignore[arg-type]
    with pytest.raises(CommandError, match="rejected by policy"):
        await xapi.profiles_list(tolerant=True)


# ------------------------------------------------------- the same over JSON-RPC and cloud


async def test_json_rpc_method_not_found_is_not_supported(fake: FakeDevice,
                                                          device: Device) -> None:
    fake.behaviour = lambda request, fake: error(request, -32601, "Method not found")
    async with make(device) as transport:
        xapi = Xapi(transport)
        with pytest.raises(NotSupportedError) as info:
            await xapi.profiles_list()
        assert await xapi.profiles_list(tolerant=True) == []
    assert info.value.kind == "command"
    assert getattr(info.value, "code", None) == -32601


async def test_json_rpc_other_errors_are_not_read_as_absent(fake: FakeDevice,
                                                            device: Device) -> None:
    fake.behaviour = lambda request, fake: error(request, 1, "Certificate rejected by policy",
                                                 {"Cause": 21})
    async with make(device) as transport:
        with pytest.raises(CommandError) as info:
            await Xapi(transport).profiles_list(tolerant=True)
    assert not isinstance(info.value, NotSupportedError)


async def test_json_rpc_xget_no_match_is_absent(fake: FakeDevice,
                                                device: Device) -> None:
    fake.behaviour = lambda request, fake: error(request, -32602, "No match on Path argument")
    async with make(device) as transport:
        assert await Xapi(transport).read_tree(("Configuration", "Peripherals", "Security",
                                                "Certificates", "SyncToPeripherals",
                                                "Enabled")) is None


@respx.mock
async def test_cloud_not_supported_is_not_supported(tmp_path: Path) -> None:
    from certfleet.fleet.inventory import Verify
    from certfleet.fleet.xapi._config import RetryPolicy
    from certfleet.fleet.xapi.cloud import CloudClients, CloudTransport

    api_url = "https://webex.test"
    inv = tmp_path / "inv.yaml"
    inv.write_text(f"defaults: {{transport: cloud, token: 'env:WEBEX_TOKEN', api_url: "
                   f"'{api_url}'}}\ndevices:\n  board-1: {{device_id: 'DEV-1'}}\n")
    board = load_inventory(inv).devices["board-1"]
    respx.get(f"{api_url}/v1/devices/DEV-1").mock(return_value=httpx.Response(200, json={
        "id": "DEV-1", "connectionStatus": "connected", "capabilities": ["xapi"],
        "permissions": ["xapi:all"]}))
    text = "[Command 'Security.Certificates.Services.Enrollment.Profiles.List' not supported]"
    respx.post(f"{api_url}/v1/xapi/command/Security.Certificates.Services.Enrollment."
               "Profiles.List").mock(return_value=httpx.Response(400, json={"message": text}))
    respx.post(f"{api_url}/v1/xapi/command/Security.Certificates.CA.Delete").mock(
        return_value=httpx.Response(400, json={"message": "Certificate not found"}))
    shared = CloudClients()
    try:
        api = shared.api(api_url, Verify("system"), Secret("tok-" + "x" * 40),
                         RetryPolicy(attempts=1, base=0.0, cap=0.0))
        async with CloudTransport(board, api) as cloud:
            xapi = Xapi(cloud)
            with pytest.raises(NotSupportedError):
                await xapi.profiles_list()
            assert await xapi.profiles_list(tolerant=True) == []
            with pytest.raises(CommandError) as other:
                await xapi.ca_delete("ab" * 20)
    finally:
        await shared.aclose()
    assert not isinstance(other.value, NotSupportedError)
