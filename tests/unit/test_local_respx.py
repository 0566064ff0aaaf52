"""Local transport edge cases with respx routes, through certfleet's httpx client set-up
(`build_client`: TLS context, no cookie jar, no proxies from the environment) and the
`HttpxClient` adapter. The client a run reaches devices with (StreamClient) has its own
tests over real sockets in tests/unit/test_http_client.py."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import respx

from fleet.inventory import Device, Verify, load_inventory
from fleet.secrets import Secret
from fleet.xapi._httpx import HttpxClient, build_client
from fleet.xapi.commands import Xapi
from fleet.xapi.local import LocalTransport, RetryPolicy, Timeouts

BASE = "https://127.0.0.1:8443"
SYSTEM_UNIT = b"""<?xml version="1.0"?>
<Status product="Cisco Codec" version="ce11.24.1.5" apiVersion="4"><SystemUnit>
<ProductId>Cisco Room Bar</ProductId><ProductPlatform>Room Bar</ProductPlatform>
<Software><Version>ce11.24.1.5.1234abcd</Version><DisplayName>RoomOS 11.24.1.5 1234abcd</DisplayName></Software>
<Hardware><Module><SerialNumber>FOC2702N9ZS</SerialNumber></Module></Hardware>
</SystemUnit></Status>"""


def client_for(verify: Verify) -> HttpxClient:
    return HttpxClient(build_client(verify, max_connections=10, timeouts=Timeouts()))


@pytest.fixture
def devices(tmp_path: Path) -> dict[str, Device]:
    inv = tmp_path / "inv.yaml"
    inv.write_text(
        "defaults: {username: admin, password: 'env:CF_TEST_PW', verify: insecure}\n"
        "devices:\n"
        "  room-1: {host: 127.0.0.1, port: 8443}\n"
        "  room-2: {host: 127.0.0.1, port: 8443}\n"
    )
    return load_inventory(inv).devices


@respx.mock
async def test_status_read_through_a_session(devices: dict[str, Device]) -> None:
    begin = respx.post(f"{BASE}/xmlapi/session/begin").mock(
        return_value=httpx.Response(204, headers={"Set-Cookie": "SessionId=s-1; Path=/"})
    )
    get = respx.get(f"{BASE}/getxml", params={"location": "/Status/SystemUnit"}).mock(
        return_value=httpx.Response(200, content=SYSTEM_UNIT)
    )
    end = respx.post(f"{BASE}/xmlapi/session/end").mock(return_value=httpx.Response(204))
    client = client_for(devices["room-1"].verify)
    try:
        transport = LocalTransport(devices["room-1"], client, Secret("pw-123456"))
        async with transport:
            unit = await Xapi(transport).system_unit()
    finally:
        await client.aclose()
    assert unit.product == "Cisco Room Bar"
    assert unit.serial == "FOC2702N9ZS"
    assert unit.software == "RoomOS 11.24.1.5 1234abcd"
    assert begin.call_count == get.call_count == end.call_count == 1
    assert get.calls.last.request.headers["cookie"] == "SessionId=s-1"


@respx.mock
async def test_session_cookies_never_leak_between_devices(devices: dict[str, Device]) -> None:
    # Two devices on one address (different ports in real life share the cookie domain):
    # a shared cookie jar would send one device's SessionId to the other.
    sessions = iter(["s-A", "s-B"])
    respx.post(f"{BASE}/xmlapi/session/begin").mock(
        side_effect=lambda request: httpx.Response(
            204, headers={"Set-Cookie": f"SessionId={next(sessions)}; Path=/"}
        )
    )
    put = respx.post(f"{BASE}/putxml").mock(
        return_value=httpx.Response(200, content=b'<Command><CAShowResult status="OK"/></Command>')
    )
    respx.post(f"{BASE}/xmlapi/session/end").mock(return_value=httpx.Response(204))
    client = client_for(devices["room-1"].verify)  # one client for both: the worst case
    try:
        a = LocalTransport(devices["room-1"], client, Secret("pw-123456"))
        b = LocalTransport(devices["room-2"], client, Secret("pw-123456"))
        async with a, b:
            await Xapi(a).ca_show()
            await Xapi(b).ca_show()
    finally:
        await client.aclose()
    cookies = [call.request.headers.get("cookie") for call in put.calls]
    assert cookies == ["SessionId=s-A", "SessionId=s-B"]


@respx.mock
async def test_retry_after_on_503_is_honoured(devices: dict[str, Device],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr("fleet.xapi.local.asyncio.sleep", fake_sleep)
    respx.post(f"{BASE}/xmlapi/session/begin").mock(
        side_effect=[
            httpx.Response(503, headers={"Retry-After": "3"}),
            httpx.Response(503, headers={"Retry-After": "soon"}),  # malformed: backoff instead
            httpx.Response(204, headers={"Set-Cookie": "SessionId=s; Path=/"}),
        ]
    )
    respx.post(f"{BASE}/xmlapi/session/end").mock(return_value=httpx.Response(204))
    client = client_for(devices["room-1"].verify)
    try:
        transport = LocalTransport(
            devices["room-1"], client, Secret("pw-123456"),
            retry=RetryPolicy(attempts=4, base=0.01, cap=1.0),
        )
        async with transport:
            pass
    finally:
        await client.aclose()
    assert len(slept) == 2
    assert slept[0] >= 3.0
    assert slept[1] <= 0.02
