"""Edge cases of the local HTTPS transport, one at a time, with httpx.MockTransport.

(The real wire — TLS, sessions, rate limits — is exercised against roomsim in
tests/integration; these pin down retry, auth and session rules exactly.)
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from fleet.errors import (
    AuthError,
    BadReplyError,
    CommandError,
    RateLimitedError,
    TransportError,
    UnreachableError,
)
from fleet.inventory import Device, load_inventory
from fleet.secrets import Secret
from fleet.xapi._httpx import HttpxClient
from fleet.xapi.commands import Xapi
from fleet.xapi.local import LocalTransport, RetryPolicy
from fleet.xapi.transport import Exchange

OK_ADD = b'<?xml version="1.0"?><Command><CAAddResult status="OK"/></Command>'
CA_SHOW = (
    b'<Command><CAShowResult status="OK"><Details item="1"><Fingerprint>AB:CD:EF</Fingerprint>'
    b"<SubjectName>/O=Example/CN=Root</SubjectName><notAfter>Jan  2 03:04:05 2031 GMT</notAfter>"
    b"</Details></CAShowResult></Command>"
)
FAST = RetryPolicy(attempts=4, base=0.001, cap=0.002)


@pytest.fixture
def device(tmp_path: Path) -> Device:
    inv = tmp_path / "inv.yaml"
    inv.write_text(
        "defaults: {username: admin, password: 'env:CF_TEST_PW', verify: insecure}\n"
        "devices:\n  room-1: {host: 127.0.0.1, port: 8443}\n"
    )
    return load_inventory(inv).devices["room-1"]


Handler = Callable[[httpx.Request], httpx.Response]


def make(device: Device, handler: Handler, calls: list[Exchange] | None = None) -> LocalTransport:
    client = HttpxClient(httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    recorder = calls.append if calls is not None else None
    return LocalTransport(device, client, Secret("s3cret-pw"), retry=FAST, recorder=recorder)


def session_ok(request: httpx.Request) -> httpx.Response | None:
    if request.url.path == "/xmlapi/session/begin":
        return httpx.Response(204, headers={"Set-Cookie": "SessionId=abc123; Path=/; HttpOnly"})
    if request.url.path == "/xmlapi/session/end":
        return httpx.Response(204)
    return None


async def test_session_is_opened_used_and_closed(device: Device) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return session_ok(request) or httpx.Response(200, content=CA_SHOW)

    calls: list[Exchange] = []
    async with make(device, handler, calls) as transport:
        cas = await Xapi(transport).ca_show()
    assert [r.url.path for r in seen] == ["/xmlapi/session/begin", "/putxml", "/xmlapi/session/end"]
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
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(401, text="401 Unauthorized",
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

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal puts
        if (reply := session_ok(request)) is not None:
            return reply
        puts += 1
        return httpx.Response(503) if puts < 3 else httpx.Response(200, content=OK_ADD)

    calls: list[Exchange] = []
    async with make(device, handler, calls) as transport:
        await Xapi(transport).ca_add("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    assert puts == 3
    add = next(c for c in calls if c.kind == "command")
    assert add.attempts == 3 and add.ok
    assert add.body is not None and "1 PEM certificate" in add.body


async def test_503_gives_up_after_the_attempts(device: Device) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return session_ok(request) or httpx.Response(503)

    async with make(device, handler) as transport:
        with pytest.raises(RateLimitedError):
            await Xapi(transport).ca_show()


async def test_no_session_support_falls_back_to_basic_auth(device: Device) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/xmlapi/session/begin":
            return httpx.Response(302, headers={"Location": "/web/signin"})
        return httpx.Response(200, content=CA_SHOW)

    async with make(device, handler) as transport:
        await Xapi(transport).ca_show()
    assert seen[-1].url.path == "/putxml"
    assert seen[-1].headers["authorization"].startswith("Basic ")
    assert all(r.url.path != "/xmlapi/session/end" for r in seen)


async def test_connect_errors_are_retried_and_reported_unreachable(device: Device) -> None:
    attempts = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        raise httpx.ConnectError("Connection refused", request=request)

    with pytest.raises(UnreachableError, match="cannot connect"):
        async with make(device, handler):
            pass
    assert attempts == FAST.attempts


async def test_broken_reply_to_a_write_is_not_repeated(device: Device) -> None:
    deletes = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal deletes
        if (reply := session_ok(request)) is not None:
            return reply
        deletes += 1
        raise httpx.RemoteProtocolError("peer closed connection", request=request)

    async with make(device, handler) as transport:
        with pytest.raises(TransportError, match="broke"):
            await Xapi(transport).ca_delete("abcdef")
    assert deletes == 1


async def test_broken_reply_to_a_read_is_repeated(device: Device) -> None:
    reads = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal reads
        if (reply := session_ok(request)) is not None:
            return reply
        reads += 1
        if reads == 1:
            raise httpx.ReadError("reset", request=request)
        return httpx.Response(200, content=CA_SHOW)

    async with make(device, handler) as transport:
        assert len(await Xapi(transport).ca_show()) == 1
    assert reads == 2


async def test_lost_session_logs_in_once_more(device: Device) -> None:
    begins = 0
    puts = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal begins, puts
        if request.url.path == "/xmlapi/session/begin":
            begins += 1
            return httpx.Response(204, headers={"Set-Cookie": f"SessionId=s{begins}"})
        if request.url.path == "/xmlapi/session/end":
            return httpx.Response(204)
        puts += 1
        if request.headers.get("cookie") == "SessionId=s1":
            return httpx.Response(401)
        return httpx.Response(200, content=CA_SHOW)

    async with make(device, handler) as transport:
        await Xapi(transport).ca_show()
    assert begins == 2 and puts == 2


async def test_device_errors_carry_device_and_xpath(device: Device) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return session_ok(request) or httpx.Response(
            200, content=b"<ActionError><Reason>No action detected in document</Reason></ActionError>"
        )

    async with make(device, handler) as transport:
        with pytest.raises(CommandError) as info:
            await Xapi(transport).ca_show()
    assert info.value.device == "room-1"
    assert info.value.xpath == "Security/Certificates/CA/Show"
    assert "No action detected" in str(info.value)


async def test_garbage_reply(device: Device) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return session_ok(request) or httpx.Response(200, content=b"<<<%%%garbage")

    async with make(device, handler) as transport:
        with pytest.raises(BadReplyError, match="not XML"):
            await Xapi(transport).ca_show()


async def test_secret_params_are_not_recorded(device: Device) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if (reply := session_ok(request)) is not None:
            return reply
        assert b"<PrivateKeyPassword>key-pass-123</PrivateKeyPassword>" in request.content
        return httpx.Response(200, content=b'<Command><ServicesAddResult status="OK"/></Command>')

    calls: list[Exchange] = []
    async with make(device, handler, calls) as transport:
        await Xapi(transport).services_add("PEM", Secret("key-pass-123"))
    recorded = repr([c.to_dict() for c in calls])
    assert "key-pass-123" not in recorded
    assert "********" in recorded


async def test_dry_run_refuses_writes(device: Device) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("nothing may be sent")

    xapi = Xapi(make(device, handler), read_only=True)
    with pytest.raises(RuntimeError, match="dry run"):
        await xapi.ca_add("PEM")


async def test_a_secret_in_a_wire_error_text_is_masked(device: Device) -> None:
    # What httpx/ssl/aiohttp say can quote the request's header: the password, or the
    # Authorization value it is in, never reaches the error text.
    basic = base64.b64encode(b"admin:s3cret-pw").decode()

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"Illegal header value b'Basic {basic}\\n' (pw s3cret-pw)")

    calls: list[Exchange] = []
    with pytest.raises(UnreachableError) as info:
        async with make(device, handler, calls):
            pass
    text = str(info.value) + " ".join(str(c.error) for c in calls)
    assert "Illegal header value" in text
    assert "s3cret-pw" not in text and basic not in text
