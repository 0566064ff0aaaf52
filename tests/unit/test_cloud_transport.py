"""The Webex cloud xAPI transport and the device-list import, against respx routes.

No test sleeps for real: the pacer and the retries run on a fake clock whose sleep only
moves time forward, so the waits can be asserted exactly.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from certfleet.fleet.cloud_import import (
    CloudDevice,
    CloudSettings,
    fetch_devices,
    merge_inventory,
    safe_name,
    write_inventory,
)
from certfleet.fleet.errors import (
    AuthError,
    BadReplyError,
    CommandError,
    DeviceError,
    InputError,
    InventoryError,
    ParameterError,
    RateLimitedError,
    TransportError,
    UnreachableError,
)
from certfleet.fleet.inventory import Device, Verify, load_inventory
from certfleet.fleet.plans.push_ca import PushCa
from certfleet.fleet.runner import RunOptions, run_plan
from certfleet.fleet.secrets import Secret, SecretRef
from certfleet.fleet.xapi._config import RetryPolicy
from certfleet.fleet.xapi.cloud import (
    CloudClients,
    CloudTransport,
    RatePacer,
    WebexApi,
    config_key,
    parse_retry_after,
)
from certfleet.fleet.xapi.commands import Xapi
from certfleet.fleet.xapi.transport import Exchange

API = "https://webex.test"
TOKEN = "NjQ5ZTk2YTMtZmFrZS10b2tlbi1mb3ItdGVzdHMtb25seQ_PF84_1eb65fdf"
WALL0 = 1_800_000_000.0
FP1 = "a1" * 20
FP2 = "b2" * 20


class FakeTime:
    """A monotonic clock that moves only when someone sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def wall(self) -> float:
        return WALL0 + self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(seconds, 0.0)
        await asyncio.sleep(0)


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


@pytest.fixture
def inventory(tmp_path: Path) -> dict[str, Device]:
    path = tmp_path / "inv.yaml"
    lines = [
        "defaults: {transport: cloud, token: 'env:WEBEX_TOKEN', api_url: 'https://webex.test'}",
        "devices:",
    ]
    lines += [f"  board-{i}: {{device_id: 'DEV-{i}'}}" for i in range(1, 4)]
    path.write_text("\n".join(lines) + "\n")
    return load_inventory(path).devices


def clients(fake: FakeTime, **kwargs: Any) -> CloudClients:
    return CloudClients(clock=fake.clock, sleep=fake.sleep, wall_clock=fake.wall, **kwargs)


def make_api(shared: CloudClients, token: str = TOKEN,
             retry: RetryPolicy | None = None) -> WebexApi:
    return shared.api(API, Verify("system"), Secret(token),
                      retry or RetryPolicy(attempts=3, base=0.25, cap=0.25))


def transport(device: Device, api: WebexApi, calls: list[Exchange] | None = None) -> CloudTransport:
    return CloudTransport(device, api, recorder=(calls.append if calls is not None else None))


def lookup(device_id: str = "DEV-1", status: str = "connected", **extra: Any) -> respx.Route:
    body = {"id": device_id, "displayName": device_id, "connectionStatus": status,
            "product": "Cisco Room Bar", "capabilities": ["xapi"],
            "permissions": ["xapi:readonly", "xapi:all"], **extra}
    return respx.get(f"{API}/v1/devices/{device_id}").mock(
        return_value=httpx.Response(200, json=body))


def ca_show_reply() -> httpx.Response:
    return httpx.Response(200, json={"deviceId": "DEV-1", "result": {"Details": [
        {"id": 1, "Fingerprint": FP1.upper(), "SubjectName": "/CN=Corp Root",
         "IssuerName": "/CN=Corp Root", "notAfter": "Aug 08 03:04:26 2033 GMT"},
        {"id": 2, "Fingerprint": FP2, "SubjectName": "/CN=Other", "IssuerName": "/CN=Other",
         "notAfter": "Aug 08 03:04:26 2031 GMT"},
    ]}})


def command_route(name: str) -> respx.Route:
    return respx.post(f"{API}/v1/xapi/command/{name}")


# ----------------------------------------------------------------------------- wire


@respx.mock
async def test_commands_go_as_dotted_paths_with_arguments_and_multiline_body(
    inventory: dict[str, Device], fake: FakeTime
) -> None:
    lookup()
    show = command_route("Security.Certificates.CA.Show").mock(return_value=ca_show_reply())
    add = command_route("Security.Certificates.CA.Add").mock(
        return_value=httpx.Response(200, json={"deviceId": "DEV-1", "result": {}}))
    activate = command_route("Security.Certificates.Services.Activate").mock(
        return_value=httpx.Response(200, json={"deviceId": "DEV-1", "result": {}}))
    shared = clients(fake)
    calls: list[Exchange] = []
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    try:
        async with transport(inventory["board-1"], make_api(shared), calls) as cloud:
            xapi = Xapi(cloud)
            cas = await xapi.ca_show()
            await xapi.ca_add(pem)
            await xapi.services_activate(FP1, "802.1X")
    finally:
        await shared.aclose()
    assert [c.fingerprint for c in cas] == [FP1, FP2]
    assert cas[0].subject == "/CN=Corp Root" and cas[0].not_after is not None
    sent = json.loads(add.calls.last.request.content)
    assert sent == {"deviceId": "DEV-1", "arguments": {}, "body": pem}
    assert json.loads(activate.calls.last.request.content)["arguments"] == {
        "Fingerprint": FP1, "Purpose": "802.1X"}
    request = show.calls.last.request
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["content-type"] == "application/json"
    assert [c.kind for c in calls] == ["session", "command", "command", "command"]
    assert calls[2].body is not None and "1 PEM certificate" in calls[2].body
    assert all(c.ok for c in calls)


@respx.mock
async def test_result_is_normalised_like_the_local_transport(
    inventory: dict[str, Device], fake: FakeTime
) -> None:
    lookup()
    command_route("Security.Certificates.Services.Show").mock(return_value=httpx.Response(
        200, json={"deviceId": "DEV-1", "result": {"Details": {
            "Fingerprint": FP1, "UsedFor": "802.1X", "PublicKeySize": 2048, "Valid": True}}}))
    command_route("Security.Certificates.CA.Show").mock(return_value=httpx.Response(
        200, json={"deviceId": "DEV-1", "result": {}}))
    shared = clients(fake)
    try:
        async with transport(inventory["board-1"], make_api(shared)) as cloud:
            services = await cloud.command(("Security", "Certificates", "Services", "Show"))
            empty = await cloud.command(("Security", "Certificates", "CA", "Show"))
    finally:
        await shared.aclose()
    # a single Details structure is still a list; leaves are text, as putxml gives them
    assert services == {"Details": [{"Fingerprint": FP1, "UsedFor": "802.1X",
                                     "PublicKeySize": "2048", "Valid": "True"}]}
    assert empty == {}


@respx.mock
async def test_status_reads_the_subtree_and_picks_array_items_by_id(
    inventory: dict[str, Device], fake: FakeTime
) -> None:
    lookup()
    status = respx.get(f"{API}/v1/xapi/status").mock(side_effect=lambda request: (
        httpx.Response(200, json={"deviceId": "DEV-1", "result": {"SystemUnit": {
            "ProductId": "Cisco Room Bar", "Software": {"DisplayName": "RoomOS 11.24"},
            "Hardware": {"Module": {"SerialNumber": "FOC123"}}}}})
        if "SystemUnit" in request.url.params.get_list("name")
        else httpx.Response(200, json={"deviceId": "DEV-1", "result": {"Network": [
            {"id": 1, "IEEE8021X": {"Status": "Connected", "Reason": ""}}]}})
    ))
    shared = clients(fake)
    try:
        async with transport(inventory["board-1"], make_api(shared)) as cloud:
            unit = await Xapi(cloud).system_unit()
            dot1x = await cloud.get(("Status", "Network", 1, "IEEE8021X"))
            missing = await cloud.get(("Status", "Network", 2, "IEEE8021X"))
    finally:
        await shared.aclose()
    assert (unit.product, unit.serial, unit.software) == ("Cisco Room Bar", "FOC123",
                                                          "RoomOS 11.24")
    assert dot1x == {"Status": "Connected", "Reason": ""}
    assert missing is None
    first = status.calls[0].request.url.params
    assert first["deviceId"] == "DEV-1"
    assert first.get_list("name") == ["SystemUnit", "SystemUnit.*"]
    assert status.calls[1].request.url.params.get_list("name") == [
        "Network[1].IEEE8021X", "Network[1].IEEE8021X.*"]
    assert "Network%5B1%5D.IEEE8021X" in str(status.calls[1].request.url)


def test_configuration_keys_use_the_documented_form() -> None:
    assert config_key(("Network", 1, "IEEE8021X", "Mode")) == "Network[1].IEEE8021X.Mode"
    assert config_key(("Peripherals", "Security", "Certificates", "SyncToPeripherals",
                       "Enabled")) == "Peripherals.Security.Certificates.SyncToPeripherals.Enabled"
    with pytest.raises(ParameterError):
        config_key(("Network", "1/../x"))
    with pytest.raises(ParameterError):
        config_key((1, "Mode"))


def config_item(value: Any, kind: str = "string", enum: list[str] | None = None,
                editable: bool = True) -> dict[str, Any]:
    space: dict[str, Any] = {"type": kind}
    if enum:
        space["enum"] = enum
    return {"value": value, "source": "default",
            "sources": {"default": {"value": value, "editability": {"isEditable": False,
                                                                    "reason": "FACTORY_DEFAULT"}},
                        "configured": {"value": None, "editability": {
                            "isEditable": editable,
                            **({} if editable else {"reason": "NOT_AUTHORIZED"})}}},
            "valueSpace": space}


@respx.mock
async def test_configuration_read_and_json_patch(
    inventory: dict[str, Device], fake: FakeTime
) -> None:
    lookup()
    items = {
        "Network[1].IEEE8021X.Mode": config_item("Off", enum=["Off", "On"]),
        "Network[1].IEEE8021X.Eap.Tls": config_item("On", enum=["Off", "On"]),
        "Network[1].IEEE8021X.Identity": config_item(""),
    }
    read = respx.get(f"{API}/v1/deviceConfigurations").mock(side_effect=lambda request: (
        httpx.Response(200, json={"deviceId": "DEV-1", "items": items})
        if request.url.params["key"] == "Network[1].IEEE8021X.*"
        else httpx.Response(200, json={"deviceId": "DEV-1", "items": {
            "Audio.Ultrasound.MaxVolume": config_item(70, "integer")}})
        if request.url.params["key"] == "Audio.Ultrasound.MaxVolume"
        else httpx.Response(200, json={"deviceId": "DEV-1", "items": {}})
    ))
    patch = respx.patch(f"{API}/v1/deviceConfigurations").mock(
        return_value=httpx.Response(200, json={"deviceId": "DEV-1", "items": {}}))
    shared = clients(fake)
    calls: list[Exchange] = []
    try:
        async with transport(inventory["board-1"], make_api(shared), calls) as cloud:
            tree = await cloud.get(("Configuration", "Network", 1, "IEEE8021X"))
            await cloud.configure(("Network", 1, "IEEE8021X", "Mode"), "On")
            await cloud.configure(("Audio", "Ultrasound", "MaxVolume"), "50")
            with pytest.raises(ParameterError, match="not one of Off, On"):
                await cloud.configure(("Network", 1, "IEEE8021X", "Mode"), "Sometimes")
            with pytest.raises(ParameterError, match="not known"):
                await cloud.configure(("No", "Such", "Key"), "1")
    finally:
        await shared.aclose()
    assert tree == {"Mode": "Off", "Eap": {"Tls": "On"}, "Identity": ""}
    first, second = (json.loads(c.request.content) for c in patch.calls)
    assert first == [{"op": "replace", "path": "Network[1].IEEE8021X.Mode/sources/configured/value",
                      "value": "On"}]
    assert second == [{"op": "replace",
                       "path": "Audio.Ultrasound.MaxVolume/sources/configured/value",
                       "value": 50}]  # a native integer, as the valueSpace says
    request = patch.calls[0].request
    assert request.headers["content-type"] == "application/json-patch+json"
    assert request.url.params["deviceId"] == "DEV-1"
    assert read.call_count == 3  # subtree; one leaf looked up for its type; one unknown key
    assert [c.kind for c in calls].count("configure") == 4


@respx.mock
async def test_a_configuration_webex_may_not_change_is_refused_before_patching(
    inventory: dict[str, Device], fake: FakeTime
) -> None:
    lookup()
    respx.get(f"{API}/v1/deviceConfigurations").mock(return_value=httpx.Response(
        200, json={"items": {"NetworkServices.HTTP.Mode": config_item("HTTPS",
                                                                       editable=False)}}))
    patch = respx.patch(f"{API}/v1/deviceConfigurations")
    shared = clients(fake)
    try:
        async with transport(inventory["board-1"], make_api(shared)) as cloud:
            with pytest.raises(CommandError, match="NOT_AUTHORIZED"):
                await cloud.configure(("NetworkServices", "HTTP", "Mode"), "Off")
    finally:
        await shared.aclose()
    assert patch.call_count == 0


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("status", ["disconnected", "offline_expired", "unknown", None])
@respx.mock
async def test_offline_devices_are_unreachable_and_get_no_command(
    inventory: dict[str, Device], fake: FakeTime, status: str | None
) -> None:
    lookup(status=status) if status else respx.get(f"{API}/v1/devices/DEV-1").mock(
        return_value=httpx.Response(200, json={"id": "DEV-1"}))
    command = respx.post(url__startswith=f"{API}/v1/xapi/")
    shared = clients(fake)
    calls: list[Exchange] = []
    try:
        with pytest.raises(UnreachableError) as caught:
            async with transport(inventory["board-1"], make_api(shared), calls) as cloud:
                await Xapi(cloud).ca_show()
    finally:
        await shared.aclose()
    assert command.call_count == 0
    assert caught.value.kind == "unreachable"
    assert f"device is offline in Webex (connectionStatus {status or 'unknown'})" in str(
        caught.value)
    assert calls[0].ok is False and calls[0].error


@respx.mock
async def test_a_401_is_sent_once_and_never_again(
    inventory: dict[str, Device], fake: FakeTime
) -> None:
    route = respx.get(f"{API}/v1/devices/DEV-1").mock(return_value=httpx.Response(
        401, json={"message": "The request requires a valid access token set in the "
                   "Authorization request header.", "errors": [], "trackingId": "ROUTER_1"}))
    shared = clients(fake)
    try:
        with pytest.raises(AuthError) as caught:
            async with transport(inventory["board-1"], make_api(shared)):
                pass
    finally:
        await shared.aclose()
    assert route.call_count == 1
    assert "HTTP 401" in str(caught.value) and "ROUTER_1" in str(caught.value)
    assert fake.sleeps == []


@respx.mock
async def test_403_on_a_command_is_an_auth_error_not_retried(
    inventory: dict[str, Device], fake: FakeTime
) -> None:
    lookup()
    route = command_route("Security.Certificates.CA.Show").mock(
        return_value=httpx.Response(403, json={"message": "Forbidden"}))
    shared = clients(fake)
    try:
        async with transport(inventory["board-1"], make_api(shared)) as cloud:
            with pytest.raises(AuthError, match="scope"):
                await Xapi(cloud).ca_show()
    finally:
        await shared.aclose()
    assert route.call_count == 1


@respx.mock
async def test_read_only_access_is_refused_before_a_command_is_sent(
    inventory: dict[str, Device], fake: FakeTime
) -> None:
    lookup(permissions=["xapi:readonly"])
    route = command_route("Security.Certificates.CA.Show")
    shared = clients(fake)
    try:
        async with transport(inventory["board-1"], make_api(shared)) as cloud:
            with pytest.raises(AuthError, match="Full Access"):
                await Xapi(cloud).ca_show()
    finally:
        await shared.aclose()
    assert route.call_count == 0


@respx.mock
async def test_a_command_the_cloud_refuses_says_so_with_its_reply(
    inventory: dict[str, Device], fake: FakeTime
) -> None:
    lookup()
    text = "[Command 'Security.Certificates.Services.Enrollment.Profiles.List' not supported]"
    command_route("Security.Certificates.Services.Enrollment.Profiles.List").mock(
        return_value=httpx.Response(400, json={"message": text, "errors": [
            {"description": text}], "trackingId": "ROUTERGW_abc"}))
    command_route("Security.Certificates.CA.Delete").mock(
        return_value=httpx.Response(400, json={"message": "Certificate not found"}))
    command_route("Security.Certificates.Services.Activate").mock(
        return_value=httpx.Response(400, json={"message": "Invalid value for parameter "
                                                          "Purpose"}))
    shared = clients(fake)
    try:
        async with transport(inventory["board-1"], make_api(shared)) as cloud:
            xapi = Xapi(cloud)
            with pytest.raises(CommandError) as caught:
                await xapi.profiles_list()
            assert await xapi.profiles_list(tolerant=True) == []  # as old firmware would
            with pytest.raises(CommandError) as refused:
                await xapi.ca_delete(FP1)
            with pytest.raises(ParameterError):
                await xapi.services_activate(FP1, "Nonsense")
    finally:
        await shared.aclose()
    message = str(caught.value)
    assert "not available through the Webex cloud xAPI" in message
    assert text in message and "ROUTERGW_abc" in message
    assert caught.value.xpath == "Security/Certificates/Services/Enrollment/Profiles/List"
    assert "Certificate not found" in str(refused.value)
    assert "not available" not in str(refused.value)


# ----------------------------------------------------------------------- rate limits


def test_retry_after_forms() -> None:
    assert parse_retry_after("7", now=WALL0) == (7.0, "Retry-After 7")
    date = email.utils.formatdate(WALL0 + 42, usegmt=True)
    assert parse_retry_after(date, now=WALL0)[0] == pytest.approx(42)
    assert parse_retry_after(email.utils.formatdate(WALL0 - 100, usegmt=True),
                             now=WALL0)[0] == 1.0  # in the past: the minimum
    assert parse_retry_after("rand(30),add(30)", now=WALL0) == (15.0, "unreadable Retry-After")
    assert parse_retry_after(None, now=WALL0) == (15.0, "no Retry-After")
    assert parse_retry_after("0", now=WALL0)[0] == 1.0
    assert parse_retry_after("-5", now=WALL0)[0] == 15.0


HTML_429 = b"<html><head><title>429 Too Many Requests</title></head><body>slow down</body></html>"


@pytest.mark.parametrize(
    ("headers", "content", "wait"),
    [
        ({"Retry-After": "7", "Content-Type": "application/json"},
         b'{"message": "Too Many Requests"}', 7.0),
        ({"Retry-After": email.utils.formatdate(WALL0 + 42, usegmt=True)}, b"", 42.0),
        ({"Retry-After": "rand(30),add(30)"}, b"", 15.0),
        ({}, b"", 15.0),
        ({"Retry-After": "9", "Content-Type": "text/html"}, HTML_429, 9.0),
        ({"Content-Type": "text/html"}, HTML_429, 15.0),
    ],
    ids=["seconds", "http-date", "malformed", "missing", "html-body", "html-no-header"],
)
@respx.mock
async def test_429_waits_as_told_then_sends_again(
    inventory: dict[str, Device], fake: FakeTime, headers: dict[str, str], content: bytes,
    wait: float,
) -> None:
    lookup()
    route = command_route("Security.Certificates.CA.Show").mock(side_effect=[
        httpx.Response(429, headers=headers, content=content),
        ca_show_reply(),
    ])
    shared = clients(fake)
    calls: list[Exchange] = []
    try:
        async with transport(inventory["board-1"], make_api(shared), calls) as cloud:
            start = fake.now
            cas = await Xapi(cloud).ca_show()
    finally:
        await shared.aclose()
    assert len(cas) == 2 and route.call_count == 2
    assert fake.sleeps[0] == pytest.approx(wait)
    # after the pause the bucket starts empty: one steady-rate interval more, no burst
    assert fake.now - start == pytest.approx(wait + 60 / 280)
    assert calls[-1].attempts == 2 and calls[-1].http_status == 200
    assert shared.pacers[0].rate_limited == 1


@respx.mock
async def test_a_429_pauses_every_device_of_the_token(
    inventory: dict[str, Device], fake: FakeTime
) -> None:
    sent: list[tuple[str, float]] = []
    limited = {"done": False}

    def answer(request: httpx.Request) -> httpx.Response:
        device = json.loads(request.content)["deviceId"]
        sent.append((device, fake.now))
        if device == "DEV-1" and not limited["done"]:
            limited["done"] = True
            return httpx.Response(429, headers={"Retry-After": "30"})
        return ca_show_reply()

    for i in (1, 2, 3):
        lookup(f"DEV-{i}")
    command_route("Security.Certificates.CA.Show").mock(side_effect=answer)
    other_token = respx.get(f"{API}/v1/devices/DEV-9").mock(return_value=httpx.Response(
        200, json={"id": "DEV-9", "connectionStatus": "connected"}))
    shared = clients(fake)
    try:
        one = [transport(inventory[f"board-{i}"], make_api(shared)) for i in (1, 2, 3)]
        for cloud in one:
            await cloud.check_device()
        await Xapi(one[0]).ca_show()  # meets the 429: everyone of this token waits 30 s
        after = fake.now
        await asyncio.gather(*(Xapi(cloud).ca_show() for cloud in one[1:]))
        # a different token has its own pacer, and is not held up
        device9 = Device(name="board-9", transport="cloud", device_id="DEV-9")
        await transport(device9, make_api(shared, token="another-token-0123456789")
                        ).check_device()
    finally:
        await shared.aclose()
    assert after >= 30
    assert [t for d, t in sent if d != "DEV-1"] and all(t >= 30 for d, t in sent if d != "DEV-1")
    assert other_token.call_count == 1
    assert len(shared.pacers) == 2


@respx.mock
async def test_a_retry_after_too_long_to_wait_fails_fast_for_everyone(
    inventory: dict[str, Device], fake: FakeTime
) -> None:
    lookup("DEV-1")
    lookup("DEV-2")
    command_route("Security.Certificates.CA.Show").mock(return_value=httpx.Response(
        429, headers={"Retry-After": "3600", "Content-Type": "text/html"}, content=HTML_429))
    shared = clients(fake)
    try:
        first = transport(inventory["board-1"], make_api(shared))
        second = transport(inventory["board-2"], make_api(shared))
        await first.check_device()
        with pytest.raises(RateLimitedError, match="3600s"):
            await Xapi(first).ca_show()
        with pytest.raises(RateLimitedError, match="3600s"):
            await second.check_device()
    finally:
        await shared.aclose()
    assert max(fake.sleeps, default=0) < 1  # nobody sat out the hour


@respx.mock
async def test_5xx_is_retried_for_reads_and_idempotent_commands_only(
    inventory: dict[str, Device], fake: FakeTime
) -> None:
    lookup()
    status = respx.get(f"{API}/v1/xapi/status").mock(side_effect=[
        httpx.Response(503, json={"message": "Service Unavailable"}),
        httpx.Response(504),
        httpx.Response(200, json={"result": {"SystemUnit": {"ProductId": "Room Bar"}}}),
    ])
    show = command_route("Security.Certificates.CA.Show").mock(side_effect=[
        httpx.Response(502, text="Bad Gateway"), ca_show_reply()])
    delete = command_route("Security.Certificates.CA.Delete").mock(
        return_value=httpx.Response(503, json={"message": "Service Unavailable",
                                               "trackingId": "ROUTER_503"}))
    reboot = command_route("SystemUnit.Boot").mock(return_value=httpx.Response(502))
    shared = clients(fake)
    try:
        async with transport(inventory["board-1"], make_api(shared)) as cloud:
            xapi = Xapi(cloud)
            assert (await xapi.system_unit()).product == "Room Bar"
            assert len(await xapi.ca_show()) == 2
            with pytest.raises(TransportError, match="not sent again"):
                await xapi.ca_delete(FP1)
            with pytest.raises(TransportError, match="HTTP 502"):
                await xapi.reboot()
    finally:
        await shared.aclose()
    assert status.call_count == 3
    assert show.call_count == 2
    assert delete.call_count == 1
    assert reboot.call_count == 1


@respx.mock
async def test_connection_failures_before_sending_are_retried(
    inventory: dict[str, Device], fake: FakeTime
) -> None:
    route = respx.get(f"{API}/v1/devices/DEV-1").mock(side_effect=[
        httpx.ConnectError("connection refused"),
        httpx.Response(200, json={"id": "DEV-1", "connectionStatus": "connected"}),
    ])
    shared = clients(fake)
    try:
        async with transport(inventory["board-1"], make_api(shared)):
            pass
        route.side_effect = httpx.ConnectError("connection refused")
        with pytest.raises(UnreachableError, match="cannot connect to the Webex API"):
            async with transport(inventory["board-1"], make_api(shared)):
                pass
    finally:
        await shared.aclose()


def sliding_max(times: list[float], window: float = 60.0) -> int:
    times = sorted(times)
    best = start = 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


@respx.mock
async def test_the_pacer_keeps_500_requests_under_300_a_minute(fake: FakeTime) -> None:
    sent: list[float] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(fake.now)
        if request.method == "GET":
            device = request.url.path.rsplit("/", 1)[-1]
            return httpx.Response(200, json={"id": device, "connectionStatus": "connected"})
        return ca_show_reply()

    respx.get(url__startswith=f"{API}/v1/devices/").mock(side_effect=record)
    command_route("Security.Certificates.CA.Show").mock(side_effect=record)
    devices = [Device(name=f"room-{i}", transport="cloud", device_id=f"D{i}")
               for i in range(100)]
    shared = clients(fake)

    async def one(device: Device) -> None:
        async with transport(device, make_api(shared)) as cloud:
            for _ in range(4):
                await Xapi(cloud).ca_show()

    try:
        await asyncio.gather(*(one(d) for d in devices))
    finally:
        await shared.aclose()
    assert len(sent) == 500
    minutes = (max(sent) - min(sent)) / 60
    assert sliding_max(sent) < 300
    assert sliding_max(sent) <= 280 + 10  # the rate plus the burst, at most
    assert 270 <= (len(sent) - 10) / minutes <= 281  # steady state: the configured 280/min
    assert shared.pacers[0].rate_limited == 0


async def test_pacer_refuses_bad_settings() -> None:
    with pytest.raises(InputError):
        RatePacer(0)
    with pytest.raises(InputError):
        RatePacer(100, burst=0)


# --------------------------------------------------------------------------- secrets


@respx.mock
async def test_the_token_is_never_in_records_or_errors(
    inventory: dict[str, Device], fake: FakeTime
) -> None:
    lookup()
    # a server that echoes the token back in its error text must not get it into a report
    command_route("Security.Certificates.Services.Add").mock(return_value=httpx.Response(
        400, json={"message": f"bad request with Bearer {TOKEN}"}))
    command_route("Security.Certificates.CA.Show").mock(return_value=httpx.Response(
        401, json={"message": "The request requires a valid access token"}))
    shared = clients(fake)
    calls: list[Exchange] = []
    errors: list[str] = []
    try:
        async with transport(inventory["board-1"], make_api(shared), calls) as cloud:
            xapi = Xapi(cloud)
            for action in (lambda: xapi.services_add("PEM", Secret("key-pass-123456")),
                           xapi.ca_show):
                try:
                    await action()
                except Exception as exc:
                    errors.append(str(exc))
    finally:
        await shared.aclose()
    text = json.dumps([c.to_dict() for c in calls]) + "\n".join(errors)
    assert len(errors) == 2
    assert TOKEN not in text and "key-pass-123456" not in text
    assert "********" in text  # the PrivateKeyPassword parameter, masked
    assert repr(Secret(TOKEN)) == "********"


@respx.mock
async def test_a_next_link_to_another_host_never_gets_the_token(fake: FakeTime) -> None:
    respx.get(f"{API}/v1/devices").mock(return_value=httpx.Response(
        200, json={"items": []},
        headers={"Link": '<https://evil.test/v1/devices?start=100>; rel="next"'}))
    evil = respx.get(url__startswith="https://evil.test/")
    shared = clients(fake)
    try:
        with pytest.raises(BadReplyError, match="refused to send the token"):
            await fetch_devices(make_api(shared))
    finally:
        await shared.aclose()
    assert evil.call_count == 0


@respx.mock
@pytest.mark.parametrize("depth", [500, 100_000])
async def test_a_device_list_nested_too_deep_is_a_bad_reply(fake: FakeTime, depth: int) -> None:
    # a hostile (or broken) cloud: one item's tags nested deeper than any real reply
    deep = "[" * depth + "]" * depth
    respx.get(f"{API}/v1/devices").mock(return_value=httpx.Response(
        200, text=f'{{"items": [{{"id": "DEV-1", "displayName": "x", "tags": {deep}}}]}}',
        headers={"content-type": "application/json"}))
    shared = clients(fake)
    try:
        with pytest.raises(BadReplyError, match=r"device list.*nested"):
            await fetch_devices(make_api(shared))
    finally:
        await shared.aclose()


# ----------------------------------------------------------------------- the import


def cloud_item(i: int, **extra: Any) -> dict[str, Any]:
    return {"id": f"Y2lzY29zcGFyazovL3VzL0RFVklDRS9{i:04d}", "displayName": f"Oslo Room {i}",
            "product": "Cisco Room Bar", "serial": f"FOC{i:05d}", "type": "roomdesk",
            "tags": ["oslo", "floor 4"], "connectionStatus": "connected",
            "capabilities": ["xapi"], "permissions": ["xapi:all"], **extra}


@respx.mock
async def test_the_device_list_is_read_over_three_pages_via_link(fake: FakeTime) -> None:
    pages = [
        ([cloud_item(i) for i in range(3)], '<https://webex.test/v1/devices?start=3&max=3>; '
                                                 'rel="next"'),
        ([cloud_item(i) for i in range(3, 6)] + [cloud_item(99, capabilities=[])],
         '</v1/devices?start=6&max=3>; rel="next", <https://webex.test/v1/devices?start=0>; '
         'rel="first"'),
        ([cloud_item(6), {"id": "PHONE-1", "displayName": "Desk phone",
                          "capabilities": ["calling"]}], None),
    ]
    seen: list[httpx.URL] = []

    def page(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        items, link = pages[len(seen) - 1]
        return httpx.Response(200, json={"items": items},
                              headers={"Link": link} if link else {})

    route = respx.get(f"{API}/v1/devices").mock(side_effect=page)
    shared = clients(fake)
    try:
        listing = await fetch_devices(make_api(shared), tags=["oslo"], page_size=3)
    finally:
        await shared.aclose()
    assert route.call_count == 3 and listing.pages == 3
    assert seen[0].params["max"] == "3" and seen[0].params["tag"] == "oslo"
    assert seen[1].params["start"] == "3" and "tag" not in seen[1].params  # the link, as given
    assert str(seen[2]) == f"{API}/v1/devices?start=6&max=3"
    # an empty capabilities list does not exclude; a phone without the xapi capability does
    assert [d.serial for d in listing.devices] == [f"FOC{i:05d}" for i in (0, 1, 2, 3, 4, 5,
                                                                           99, 6)]
    assert listing.no_xapi == 1
    assert route.calls[0].request.headers["authorization"] == f"Bearer {TOKEN}"


@respx.mock
async def test_filters_are_applied_even_if_the_server_ignores_them(fake: FakeTime) -> None:
    respx.get(f"{API}/v1/devices").mock(return_value=httpx.Response(200, json={"items": [
        cloud_item(1), cloud_item(2, tags=["bergen"]),
        cloud_item(3, product="Cisco Board Pro 75"),
    ]}))
    shared = clients(fake)
    try:
        listing = await fetch_devices(make_api(shared), tags=["oslo"], product="room-bar")
    finally:
        await shared.aclose()
    assert [d.serial for d in listing.devices] == ["FOC00001"]
    assert listing.filtered == 2


def test_safe_names() -> None:
    assert safe_name("Oslo – Board 85 (4th floor)") == "oslo-board-85-4th-floor"
    assert safe_name("Tromsø Møterom, Ærøskøbing") == "tromso-moterom-aeroskobing"
    assert safe_name("Café Zürich") == "cafe-zurich"
    assert safe_name("  --Lobby.Desk_Pro  ") == "lobby.desk_pro"
    assert safe_name("会议室", "webex-FOC123") == "webex-foc123"
    assert len(safe_name("x" * 200)) <= 63


def devices_of(*items: dict[str, Any]) -> list[CloudDevice]:
    return [d for d in (CloudDevice.from_item(i) for i in items) if d is not None]


def test_a_new_inventory_loads_with_unique_safe_names(tmp_path: Path) -> None:
    items = [cloud_item(1), cloud_item(2, displayName="Oslo Room 1"),
             cloud_item(3, displayName="???", tags=["has space", "ok,comma", "-lead"])]
    text, summary = merge_inventory(None, devices_of(*items), CloudSettings())
    path = tmp_path / "inventory.yaml"
    write_inventory(path, text)
    inv = load_inventory(path)
    assert list(inv.devices) == ["oslo-room-1", "oslo-room-1-2", "webex-foc00003"]
    device = inv.devices["oslo-room-1"]
    assert device.transport == "cloud" and device.device_id == items[0]["id"]
    assert device.token == SecretRef("env", "WEBEX_TOKEN")
    assert device.api_url == "https://webexapis.com"
    assert device.tags == ("floor-4", "oslo")
    assert inv.devices["webex-foc00003"].tags == ("has-space", "lead", "ok-comma")
    assert "# Cisco Room Bar, serial FOC00001" in text
    assert summary.added == list(inv.devices) and not summary.updated and summary.kept == 0


HAND_WRITTEN = """\
# Our rooms. Hand-written: keep me.
defaults:
  username: admin
  password: env:CERTFLEET_PASSWORD   # the admin account
  verify: insecure
groups:
  oslo: {tags: [site-oslo]}
devices:
  room-1: {host: 10.0.0.1, groups: [oslo]}   # the big room
  lobby:
    host: 10.0.0.2
    timezone: Europe/Oslo
"""


def test_merging_into_a_local_fleet_keeps_everything_hand_written(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text(HAND_WRITTEN)
    text, summary = merge_inventory(
        HAND_WRITTEN, devices_of(cloud_item(1), cloud_item(2, displayName="lobby")),
        CloudSettings(token="env:MY_WEBEX", api_url="https://webex.test"),
    )
    write_inventory(path, text)
    assert text.startswith(HAND_WRITTEN.split("devices:")[0].split("groups:")[0])
    for kept in ("# Our rooms. Hand-written: keep me.", "# the admin account", "# the big room",
                 "timezone: Europe/Oslo", "oslo: {tags: [site-oslo]}"):
        assert kept in text
    inv = load_inventory(path)
    assert inv.devices["room-1"].transport == "local"
    assert inv.devices["lobby"].host == "10.0.0.2"
    # the cloud settings went into a group (the defaults stay local), joined by the imports
    cloud = inv.devices["lobby-2"]
    assert cloud.transport == "cloud" and cloud.groups == ("webex",)
    assert cloud.token == SecretRef("env", "MY_WEBEX") and cloud.api_url == "https://webex.test"
    assert summary.settings_in == "groups.webex"
    assert (len(summary.added), len(summary.updated), summary.kept) == (2, 0, 2)


def test_reimport_updates_by_device_id_and_keeps_names_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yaml"
    first, _ = merge_inventory(None, devices_of(cloud_item(1), cloud_item(2)), CloudSettings(
        api_url="https://webex.test", api_verify="system"))
    # the user renames a device, adds keys and a device of their own
    edited = first.replace("oslo-room-2:", "boardroom:").replace(
        "devices:\n", "devices:\n  my-own: {transport: cloud, device_id: HANDMADE}  # mine\n")
    edited = edited.replace("boardroom: {", "boardroom: {timezone: Europe/Oslo, ")
    path.write_text(edited)
    again, summary = merge_inventory(
        edited, devices_of(cloud_item(1, tags=["oslo", "new-tag"], displayName="Renamed"),
                           cloud_item(2), cloud_item(3)),
        CloudSettings())
    write_inventory(path, again)
    inv = load_inventory(path)
    assert sorted(summary.updated) == ["boardroom", "oslo-room-1"]
    assert summary.added == ["oslo-room-3"] and summary.kept == 1
    assert inv.devices["boardroom"].timezone == "Europe/Oslo"
    assert inv.devices["oslo-room-1"].tags == ("floor-4", "new-tag", "oslo")
    assert inv.devices["my-own"].device_id == "HANDMADE"
    assert "# mine" in again
    assert inv.devices["oslo-room-3"].api_url == "https://webex.test"  # the file's, kept


def test_a_merge_that_would_not_load_is_not_written(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text(HAND_WRITTEN)
    with pytest.raises(InventoryError, match="would not load"):
        write_inventory(path, HAND_WRITTEN.replace("host: 10.0.0.2", "hots: 10.0.0.2"))
    assert path.read_text() == HAND_WRITTEN
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


# ------------------------------------------------------------- the CLI and the runner


@pytest.fixture
def webex_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("WEBEX_TOKEN", TOKEN)
    yield


@respx.mock
def test_cli_import_webex_writes_and_merges(tmp_path: Path, webex_env: None, cli: Any) -> None:
    respx.get(f"{API}/v1/devices").mock(side_effect=[
        httpx.Response(200, json={"items": [cloud_item(1), cloud_item(2)]},
                       headers={"Link": f'<{API}/v1/devices?start=2>; rel="next"'}),
        httpx.Response(200, json={"items": [cloud_item(3)]}),
        httpx.Response(200, json={"items": [cloud_item(1), cloud_item(4)]}),
    ])
    out = tmp_path / "webex.yaml"
    first = cli("inventory", "import-webex", "--api-url", API, "--out", str(out))
    assert first.exit_code == 0, first.output
    assert "3 added, 0 updated, 0 kept" in first.stdout and "2 page(s)" in first.stdout
    second = cli("inventory", "import-webex", "--out", str(out), "-o", "json")
    assert second.exit_code == 0, second.output
    doc = second.json()
    assert (doc["added"], doc["updated"], doc["kept"]) == (1, 1, 2)
    inv = load_inventory(out)
    assert len(inv.devices) == 4 and all(d.api_url == API for d in inv.devices.values())
    assert TOKEN not in first.output + second.output + out.read_text()
    check = cli("inventory", "check", "-i", str(out))
    assert check.exit_code == 0, check.output


@respx.mock
def test_cli_import_webex_reports_a_refused_token(tmp_path: Path, webex_env: None,
                                                  cli: Any) -> None:
    respx.get(f"{API}/v1/devices").mock(return_value=httpx.Response(401, json={
        "message": "The request requires a valid access token"}))
    out = tmp_path / "webex.yaml"
    result = cli("inventory", "import-webex", "--api-url", API, "--out", str(out))
    assert result.exit_code == 1
    assert "HTTP 401" in result.stderr and not out.exists()
    missing = cli("inventory", "import-webex", "--api-url", API, "--out", str(out),
                  "--token", "env:NO_SUCH_WEBEX_TOKEN_VAR")
    assert missing.exit_code == 2 and "NO_SUCH_WEBEX_TOKEN_VAR" in missing.stderr


@respx.mock  # the local device is a real simulated one (aiohttp: not intercepted)
async def test_a_run_over_local_and_cloud_devices(tmp_path: Path, webex_env: None) -> None:
    from certfleet.roomsim import SimFleet

    sim = SimFleet(tmp_path / "sim", 1)
    await sim.start()
    try:
        room = next(iter(sim.devices.values()))
        path = tmp_path / "mixed.yaml"
        path.write_text(
            f"defaults: {{username: admin, password: 'file:{sim.password_path}', "
            f"verify: 'ca:{sim.ca_pem_path}'}}\n"
            "groups:\n  webex: {transport: cloud, token: 'env:WEBEX_TOKEN', api_url: "
            f"'{API}'}}\n"
            "devices:\n"
            f"  room-1: {{host: 127.0.0.1, port: {room.port}}}\n"
            "  board-1: {device_id: DEV-1, groups: [webex]}\n"
            "  board-2: {device_id: DEV-2, groups: [webex]}\n"
        )
        devices = list(load_inventory(path).devices.values())
        lookup("DEV-1")
        lookup("DEV-2", status="disconnected")
        command_route("Security.Certificates.CA.Show").mock(return_value=ca_show_reply())
        # the run's one read of the device's release and product
        respx.get(f"{API}/v1/xapi/status").mock(return_value=httpx.Response(200, json={
            "deviceId": "DEV-1", "result": {"SystemUnit": {
                "ProductId": "Cisco Room Bar", "ProductPlatform": "Room Bar",
                "Software": {"Version": "ce11.24.1.5.1234abcd"}}}}))

        class _Ca:
            sha1 = FP1
            subject = "/CN=Corp Root"
            pem = ""

            def matches(self, fp: str) -> bool:
                return fp == FP1

        run = await run_plan(devices, PushCa(cas=[_Ca()]),  # type: ignore[list-item]
                             RunOptions(parallel=3, dry_run=True), command="push-ca")
    finally:
        await sim.stop()
    by_name = {r.device: r for r in run.devices}
    # the simulated room lacks the CA (a dry run: it would be added), board-1 has it
    assert by_name["room-1"].transport == "local"
    assert by_name["room-1"].outcome.value == "changed", by_name["room-1"].error
    assert by_name["board-1"].transport == "cloud"
    assert by_name["board-1"].outcome.value == "ok", by_name["board-1"].error
    assert by_name["board-1"].firmware is not None
    assert by_name["board-1"].firmware["version"] == "11.24.1.5"
    assert by_name["board-2"].outcome.value == "unreachable"
    assert "offline in Webex" in (by_name["board-2"].error.message if by_name["board-2"].error
                                  else "")


@respx.mock
async def test_secret_configuration_values_are_masked_in_records(
    inventory: dict[str, Device], fake: FakeTime
) -> None:
    lookup()
    respx.get(f"{API}/v1/deviceConfigurations").mock(return_value=httpx.Response(
        200, json={"items": {"Network[1].IEEE8021X.Password": config_item("")}}))
    patch = respx.patch(f"{API}/v1/deviceConfigurations").mock(
        return_value=httpx.Response(200, json={"items": {}}))
    shared = clients(fake)
    calls: list[Exchange] = []
    try:
        # an api_url given with /v1 works the same
        api = shared.api(f"{API}/v1/", Verify("system"), Secret(TOKEN))
        async with transport(inventory["board-1"], api, calls) as cloud:
            await cloud.configure(("Network", 1, "IEEE8021X", "Password"), "radius-pw-8812")
    finally:
        await shared.aclose()
    assert json.loads(patch.calls.last.request.content)[0]["value"] == "radius-pw-8812"
    assert "radius-pw-8812" not in json.dumps([c.to_dict() for c in calls])
    assert calls[-1].params == {"value": "********"}


async def test_devices_of_one_token_share_a_pacer_at_the_lowest_rate_asked() -> None:
    clients = CloudClients()
    try:
        token, other = Secret("tok-one"), Secret("tok-two")
        first = clients.pacer_for(token, 600)
        assert first.rate_per_minute == 600
        assert clients.pacer_for(token, 900) is first and first.rate_per_minute == 600
        assert clients.pacer_for(token, 120) is first and first.rate_per_minute == 120
        assert clients.pacer_for(token) is first and first.rate_per_minute == 120
        assert clients.pacer_for(other).rate_per_minute == 280
    finally:
        await clients.aclose()


# ------------------------------------------------------------- the token goes out once


@respx.mock
async def test_a_refused_token_is_sent_once_for_the_whole_run(
    inventory: dict[str, Device], fake: FakeTime
) -> None:
    # Three devices, one token: the first request waits for Webex's answer and the 401 stops
    # the other devices before they send it.
    route = respx.get(url__startswith=f"{API}/v1/devices/").mock(
        return_value=httpx.Response(401, json={"message": "The request requires a valid "
                                                          "access token set in the header."}))
    shared = clients(fake)

    async def one(name: str) -> DeviceError:
        try:
            async with transport(inventory[name], make_api(shared)):
                pass
        except DeviceError as exc:
            return exc
        raise AssertionError("a refused token opened a device")

    try:
        errors = await asyncio.gather(*(one(name) for name in inventory))
    finally:
        await shared.aclose()
    assert route.call_count == 1
    assert {e.kind for e in errors} == {"auth"}
    assert sum("refused earlier in this run" in e.message for e in errors) == 2


@respx.mock
async def test_a_request_whose_answer_was_lost_is_not_repeated_before_the_token_is_known(
    inventory: dict[str, Device], fake: FakeTime
) -> None:
    route = respx.get(f"{API}/v1/devices/DEV-1").mock(
        side_effect=httpx.ReadError("connection reset by peer"))
    shared = clients(fake)
    try:
        with pytest.raises(DeviceError) as info:
            async with transport(inventory["board-1"], make_api(shared)):
                pass
    finally:
        await shared.aclose()
    assert route.call_count == 1
    assert "not sent again" in info.value.message


@respx.mock
async def test_the_token_in_a_wire_error_text_is_masked(
    inventory: dict[str, Device], fake: FakeTime
) -> None:
    respx.get(f"{API}/v1/devices/DEV-1").mock(
        side_effect=httpx.LocalProtocolError(f"Illegal header value b'Bearer {TOKEN} '"))
    shared = clients(fake)
    calls: list[Exchange] = []
    try:
        with pytest.raises(DeviceError) as info:
            async with transport(inventory["board-1"], make_api(shared), calls):
                pass
    finally:
        await shared.aclose()
    text = str(info.value) + " ".join(str(c.error) for c in calls)
    assert "Illegal header value" in text and TOKEN not in text


@respx.mock
@pytest.mark.parametrize("depth", [500, 100_000])
async def test_a_reply_nested_too_deep_is_a_bad_reply(
    inventory: dict[str, Device], fake: FakeTime, depth: int
) -> None:
    lookup()
    deep = "[" * depth + "]" * depth
    command_route("Security.Certificates.CA.Show").mock(return_value=httpx.Response(
        200, text=f'{{"deviceId": "DEV-1", "result": {{"Details": {deep}}}}}',
        headers={"content-type": "application/json"}))
    shared = clients(fake)
    try:
        async with transport(inventory["board-1"], make_api(shared)) as cloud:
            with pytest.raises(BadReplyError, match="nested"):
                await cloud.command(("Security", "Certificates", "CA", "Show"))
    finally:
        await shared.aclose()


def test_the_proxy_is_read_from_the_environment_once_a_run(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """One run, one proxy per API URL: the environment is read for the first device only."""
    from certfleet.fleet.xapi.webex_api import CloudClients

    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    clients = CloudClients()
    url = "https://127.0.0.1:8443"
    first = clients.client_for(Verify(mode="system"), url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # too late for this run
    assert clients.client_for(Verify(mode="system"), url) is first
    fresh = CloudClients()  # the next run reads it again
    assert fresh.client_for(Verify(mode="system"), url) is not first
    assert fresh._proxies == {url: None} and clients._proxies == {url: "http://127.0.0.1:9"}
    asyncio.run(clients.aclose())
    asyncio.run(fresh.aclose())
