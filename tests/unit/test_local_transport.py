"""Edge cases of the local HTTPS transport, one at a time: the production LocalTransport over
a fake of the HttpClient interface (tests/fake_http.py) that answers or fails as the real
client would.

(The real client is tested over real sockets in test_http_client.py; the real wire — TLS,
sessions, rate limits — against roomsim in tests/integration; these pin down retry, auth and
session rules exactly.)
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from pathlib import Path
from typing import Any

import pytest
from fake_http import FakeHttp, Handler, Sent, reply

from certfleet.fleet.errors import (
    AuthError,
    BadReplyError,
    CommandError,
    DeviceError,
    InputError,
    RateLimitedError,
    TransportError,
    UnreachableError,
)
from certfleet.fleet.inventory import Device, load_inventory
from certfleet.fleet.secrets import Secret
from certfleet.fleet.xapi._config import RetryPolicy
from certfleet.fleet.xapi._http import ConnectFailed, ConnectionBroke, HttpReply
from certfleet.fleet.xapi.commands import Xapi
from certfleet.fleet.xapi.local import LocalTransport
from certfleet.fleet.xapi.transport import Exchange, interrupted_call

OK_ADD = b'<?xml version="1.0"?><Command><CAAddResult status="OK"/></Command>'
CA_SHOW = (
    b'<Command><CAShowResult status="OK"><Details item="1"><Fingerprint>AB:CD:EF</Fingerprint>'
    b"<SubjectName>/O=Example/CN=Root</SubjectName><notAfter>Jan  2 03:04:05 2031 GMT</notAfter>"
    b"</Details></CAShowResult></Command>"
)
SYSTEM_UNIT = b"""<?xml version="1.0"?>
<Status product="Cisco Codec" version="ce11.24.1.5" apiVersion="4"><SystemUnit>
<ProductId>Cisco Room Bar</ProductId><ProductPlatform>Room Bar</ProductPlatform>
<Software><Version>ce11.24.1.5.1234abcd</Version><DisplayName>RoomOS 11.24.1.5 1234abcd</DisplayName></Software>
<Hardware><Module><SerialNumber>FOC2702N9ZS</SerialNumber></Module></Hardware>
</SystemUnit></Status>"""
FAST = RetryPolicy(attempts=4, base=0.001, cap=0.002)


@pytest.fixture
def device(tmp_path: Path) -> Device:
    inv = tmp_path / "inv.yaml"
    inv.write_text(
        "defaults: {username: admin, password: 'env:CF_TEST_PW', verify: insecure}\n"
        "devices:\n  room-1: {host: 127.0.0.1, port: 8443}\n"
    )
    return load_inventory(inv).devices["room-1"]


def make(device: Device, handler: Handler, calls: list[Exchange] | None = None) -> LocalTransport:
    recorder = calls.append if calls is not None else None
    return LocalTransport(device, FakeHttp(handler), Secret("s3cret-pw"), retry=FAST,
                          recorder=recorder)


def session_ok(request: Sent) -> HttpReply | None:
    if request.path == "/xmlapi/session/begin":
        return reply(204, cookies={"SessionId": "abc123"})
    if request.path == "/xmlapi/session/end":
        return reply(204)
    return None


async def test_session_is_opened_used_and_closed(device: Device) -> None:
    seen: list[Sent] = []

    def handler(request: Sent) -> HttpReply:
        seen.append(request)
        return session_ok(request) or reply(200, CA_SHOW)

    calls: list[Exchange] = []
    async with make(device, handler, calls) as transport:
        cas = await Xapi(transport).ca_show()
    assert [r.path for r in seen] == ["/xmlapi/session/begin", "/putxml", "/xmlapi/session/end"]
    begin, put, end = seen
    assert begin.headers["authorization"] == "Basic " + base64.b64encode(b"admin:s3cret-pw").decode()
    assert "authorization" not in put.headers
    assert put.headers["cookie"] == "SessionId=abc123"
    assert end.headers["cookie"] == "SessionId=abc123"
    assert put.headers["content-type"].startswith("text/xml")
    assert cas[0].fingerprint == "abcdef"
    assert cas[0].not_after is not None and cas[0].not_after.year == 2031
    assert [c.kind for c in calls] == ["session", "command", "session"]
    assert all(c.ok for c in calls)


async def test_wrong_password_is_tried_exactly_once(device: Device) -> None:
    seen: list[Sent] = []

    def handler(request: Sent) -> HttpReply:
        seen.append(request)
        return reply(401, b"401 Unauthorized",
                              headers={"WWW-Authenticate": 'Basic realm="CISCO-Endpoint"'})

    with pytest.raises(AuthError) as info:
        async with make(device, handler):
            pass
    assert len(seen) == 1
    assert info.value.device == "room-1"
    assert "not retried" in str(info.value)
    assert "s3cret-pw" not in str(info.value)


async def test_503_is_retried_then_succeeds(device: Device) -> None:
    puts = 0

    def handler(request: Sent) -> HttpReply:
        nonlocal puts
        if (answer := session_ok(request)) is not None:
            return answer
        puts += 1
        return reply(503) if puts < 3 else reply(200, OK_ADD)

    calls: list[Exchange] = []
    async with make(device, handler, calls) as transport:
        await Xapi(transport).ca_add("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    assert puts == 3
    add = next(c for c in calls if c.kind == "command")
    assert add.attempts == 3 and add.ok
    assert add.body is not None and "1 PEM certificate" in add.body


async def test_503_gives_up_after_the_attempts(device: Device) -> None:
    def handler(request: Sent) -> HttpReply:
        return session_ok(request) or reply(503)

    async with make(device, handler) as transport:
        with pytest.raises(RateLimitedError):
            await Xapi(transport).ca_show()


async def test_no_session_support_falls_back_to_basic_auth(device: Device) -> None:
    seen: list[Sent] = []

    def handler(request: Sent) -> HttpReply:
        seen.append(request)
        if request.path == "/xmlapi/session/begin":
            return reply(302, headers={"Location": "/web/signin"})
        return reply(200, CA_SHOW)

    async with make(device, handler) as transport:
        await Xapi(transport).ca_show()
    assert seen[-1].path == "/putxml"
    assert seen[-1].headers["authorization"].startswith("Basic ")
    assert all(r.path != "/xmlapi/session/end" for r in seen)


async def test_connect_errors_are_retried_and_reported_unreachable(device: Device) -> None:
    attempts = 0

    def handler(request: Sent) -> HttpReply:
        nonlocal attempts
        attempts += 1
        raise ConnectFailed("Connection refused")

    with pytest.raises(UnreachableError, match="cannot connect"):
        async with make(device, handler):
            pass
    assert attempts == FAST.attempts


async def test_broken_reply_to_a_write_is_not_repeated(device: Device) -> None:
    deletes = 0

    def handler(request: Sent) -> HttpReply:
        nonlocal deletes
        if (answer := session_ok(request)) is not None:
            return answer
        deletes += 1
        raise ConnectionBroke("peer closed connection")

    async with make(device, handler) as transport:
        with pytest.raises(TransportError, match="broke"):
            await Xapi(transport).ca_delete("abcdef")
    assert deletes == 1


async def test_broken_reply_to_a_read_is_repeated(device: Device) -> None:
    reads = 0

    def handler(request: Sent) -> HttpReply:
        nonlocal reads
        if (answer := session_ok(request)) is not None:
            return answer
        reads += 1
        if reads == 1:
            raise ConnectionBroke("reset")
        return reply(200, CA_SHOW)

    async with make(device, handler) as transport:
        assert len(await Xapi(transport).ca_show()) == 1
    assert reads == 2


async def test_lost_session_logs_in_once_more(device: Device) -> None:
    begins = 0
    puts = 0

    def handler(request: Sent) -> HttpReply:
        nonlocal begins, puts
        if request.path == "/xmlapi/session/begin":
            begins += 1
            return reply(204, cookies={"SessionId": f"s{begins}"})
        if request.path == "/xmlapi/session/end":
            return reply(204)
        puts += 1
        if request.headers.get("cookie") == "SessionId=s1":
            return reply(401)
        return reply(200, CA_SHOW)

    async with make(device, handler) as transport:
        await Xapi(transport).ca_show()
    assert begins == 2 and puts == 2


async def test_device_errors_carry_device_and_xpath(device: Device) -> None:
    def handler(request: Sent) -> HttpReply:
        return session_ok(request) or reply(
            200, b"<ActionError><Reason>No action detected in document</Reason></ActionError>"
        )

    async with make(device, handler) as transport:
        with pytest.raises(CommandError) as info:
            await Xapi(transport).ca_show()
    assert info.value.device == "room-1"
    assert info.value.xpath == "Security/Certificates/CA/Show"
    assert "No action detected" in str(info.value)


async def test_garbage_reply(device: Device) -> None:
    def handler(request: Sent) -> HttpReply:
        return session_ok(request) or reply(200, b"<<<%%%garbage")

    async with make(device, handler) as transport:
        with pytest.raises(BadReplyError, match="not XML"):
            await Xapi(transport).ca_show()


async def test_secret_params_are_not_recorded(device: Device) -> None:
    def handler(request: Sent) -> HttpReply:
        if (answer := session_ok(request)) is not None:
            return answer
        assert b"<PrivateKeyPassword>key-pass-123</PrivateKeyPassword>" in request.body
        return reply(200, b'<Command><ServicesAddResult status="OK"/></Command>')

    calls: list[Exchange] = []
    async with make(device, handler, calls) as transport:
        await Xapi(transport).services_add("PEM", Secret("key-pass-123"))
    recorded = repr([c.to_dict() for c in calls])
    assert "key-pass-123" not in recorded
    assert "********" in recorded


async def test_dry_run_refuses_writes(device: Device) -> None:
    def handler(request: Sent) -> HttpReply:
        raise AssertionError("nothing may be sent")

    xapi = Xapi(make(device, handler), read_only=True)
    with pytest.raises(DeviceError, match="dry run") as info:
        await xapi.ca_add("PEM")
    assert info.value.kind == "device"  # in the error tree, not "internal"
    assert info.value.xpath == "Security/Certificates/CA/Add"


async def test_a_secret_in_a_wire_error_text_is_masked(device: Device) -> None:
    # What httpx/ssl/aiohttp say can quote the request's header: the password, or the
    # Authorization value it is in, never reaches the error text.
    basic = base64.b64encode(b"admin:s3cret-pw").decode()

    def handler(request: Sent) -> HttpReply:
        raise ConnectFailed(f"Illegal header value b'Basic {basic}\\n' (pw s3cret-pw)")

    calls: list[Exchange] = []
    with pytest.raises(UnreachableError) as info:
        async with make(device, handler, calls):
            pass
    text = str(info.value) + " ".join(str(c.error) for c in calls)
    assert "Illegal header value" in text
    assert "s3cret-pw" not in text and basic not in text


async def test_status_read_through_a_session(device: Device) -> None:
    def handler(request: Sent) -> HttpReply:
        if (answer := session_ok(request)) is not None:
            return answer
        assert request.method == "GET" and request.path == "/getxml"
        assert request.query == {"location": "/Status/SystemUnit"}
        return reply(200, SYSTEM_UNIT)

    client = FakeHttp(handler)
    transport = LocalTransport(device, client, Secret("s3cret-pw"), owns_client=True)
    async with transport:
        unit = await Xapi(transport).system_unit()
    assert unit.product == "Cisco Room Bar"
    assert unit.serial == "FOC2702N9ZS"
    assert unit.software == "RoomOS 11.24.1.5 1234abcd"
    assert [r.path for r in client.sent] == ["/xmlapi/session/begin", "/getxml",
                                              "/xmlapi/session/end"]
    assert client.sent[1].headers["cookie"] == "SessionId=abc123"
    assert client.closed  # owns_client: the transport closed it


async def test_each_transport_sends_its_own_session(device: Device) -> None:
    # Two transports on one client (the worst case): each sends the cookie it was given.
    sessions = iter(["s-A", "s-B"])

    def handler(request: Sent) -> HttpReply:
        if request.path == "/xmlapi/session/begin":
            return reply(204, cookies={"SessionId": next(sessions)})
        if request.path == "/xmlapi/session/end":
            return reply(204)
        return reply(200, CA_SHOW)

    client = FakeHttp(handler)
    a = LocalTransport(device, client, Secret("s3cret-pw"))
    b = LocalTransport(device, client, Secret("s3cret-pw"))
    async with a, b:
        await Xapi(a).ca_show()
        await Xapi(b).ca_show()
    cookies = [r.headers.get("cookie") for r in client.sent if r.path == "/putxml"]
    assert cookies == ["SessionId=s-A", "SessionId=s-B"]


@pytest.mark.parametrize(("retry_after", "at_least", "at_most"), [
    ("3", 3.0, 3.0),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0, 0.02),  # a date in the past: no extra wait
    ("soon", 0.0, 0.02),  # malformed: the backoff instead
    ("", 0.0, 0.02),
])
async def test_retry_after_on_503_is_honoured(
    device: Device, monkeypatch: pytest.MonkeyPatch, retry_after: str, at_least: float,
    at_most: float,
) -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr("certfleet.fleet.xapi._config.asyncio.sleep", fake_sleep)
    answers = iter([reply(503, headers={"Retry-After": retry_after}),
                    reply(204, cookies={"SessionId": "s"})])

    def handler(request: Sent) -> HttpReply:
        return next(answers) if request.path == "/xmlapi/session/begin" else reply(204)

    transport = LocalTransport(device, FakeHttp(handler), Secret("s3cret-pw"),
                               retry=RetryPolicy(attempts=4, base=0.01, cap=1.0))
    async with transport:
        pass
    assert len(slept) == 1
    assert at_least <= slept[0] <= at_most


async def test_a_device_without_a_host_is_an_input_error(tmp_path: Path) -> None:
    inv = tmp_path / "inv.yaml"
    inv.write_text(
        "defaults: {username: admin, password: 'env:CF_TEST_PW', verify: insecure}\n"
        "devices:\n  room-1: {host: 127.0.0.1}\n"
    )
    device = load_inventory(inv).devices["room-1"]
    nowhere = dataclasses.replace(device, host=None)
    with pytest.raises(InputError, match="room-1 has no host"):
        LocalTransport(nowhere, FakeHttp(lambda r: reply(200)), Secret("x"))


async def test_the_call_in_flight_when_time_runs_out_is_named(device: Device) -> None:
    class Hanging(FakeHttp):
        async def request(self, method: str, url: str, **kwargs: Any) -> HttpReply:
            if url.endswith("/putxml"):
                await asyncio.sleep(30)
            return await super().request(method, url, **kwargs)

    calls: list[Exchange] = []
    transport = LocalTransport(device, Hanging(lambda r: session_ok(r) or reply(200)),
                               Secret("s3cret-pw"), recorder=calls.append)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2), transport:
            await Xapi(transport).ca_show()
    assert interrupted_call(calls) == "Security/Certificates/CA/Show"
    shown = next(c.to_dict() for c in calls if c.kind == "command")
    assert shown["interrupted"] is True and "time ran out" in shown["error"]


async def test_a_secret_configuration_value_is_not_recorded(device: Device) -> None:
    def handler(request: Sent) -> HttpReply:
        return session_ok(request) or reply(
            200, b'<Configuration><Success/></Configuration>')

    calls: list[Exchange] = []
    async with make(device, handler, calls) as transport:
        await transport.configure(("Network", 1, "IEEE8021X", "Password"), "wifi-pass-123")
        await transport.configure(("Network", 1, "IEEE8021X", "Mode"), "On")
    recorded = [c.to_dict() for c in calls if c.kind == "configure"]
    assert "wifi-pass-123" not in repr(recorded)
    assert recorded[0]["params"] == {"value": "********"}
    assert recorded[1]["params"] == {"value": "On"}
