"""roomsim over real sockets and real TLS: auth, sessions, limits, getxml, putxml wire shapes."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from certfleet.roomsim import SimFleet

UNAUTHORIZED_START = "401 Unauthorized\n\nThis server could not verify that you are authorized"


# ---------------------------------------------------------------- getxml


async def test_getxml_systemunit(sim, xapi):
    root = await xapi.getxml("/Status/SystemUnit")
    assert root.tag == "Status"
    assert root.attrib == {
        "product": "Cisco Codec",
        "version": "ce26.4.1.5.1234abcd",
        "apiVersion": "4",
    }
    unit = root.find("SystemUnit")
    assert unit is not None
    assert unit.findtext("ProductId") == "Cisco Board Pro"
    assert unit.findtext("ProductPlatform") == "Board Pro"
    assert unit.findtext("ProductType") == "Cisco Codec"
    assert unit.findtext("Software/Version") == "ce26.4.1.5.1234abcd"
    assert unit.findtext("Software/DisplayName") == "RoomOS 26.4.1.5 1234abcd"
    serial = unit.findtext("Hardware/Module/SerialNumber")
    assert serial == sim.devices["room-001"].serial
    assert serial.startswith("FOC") and len(serial) == 11
    assert int(unit.findtext("Uptime")) >= 0


async def test_getxml_products_rotate(sim, xapi_for):
    products = []
    for name in ("room-001", "room-002", "room-003"):
        root = await xapi_for(name).getxml("Status/SystemUnit/ProductId")
        products.append(root.findtext("SystemUnit/ProductId"))
    assert products == ["Cisco Board Pro", "Cisco Desk Pro", "Cisco Room Bar"]


async def test_getxml_trims_to_path_and_wrong_path_is_empty(xapi):
    root = await xapi.getxml("Status/SystemUnit/Software/Version")
    assert [e.tag for e in root.iter()] == ["Status", "SystemUnit", "Software", "Version"]

    network = await xapi.getxml("/Status/Network/1/IEEE8021X")
    assert network.find("Network").get("item") == "1"
    assert network.findtext("Network/IEEE8021X/Status") == "Off"
    assert (await xapi.getxml("/Status/Network")).findtext("Network/Wifi/Status") == "Disconnected"

    for absent in ("/Status/NoSuchThing", "/Bogus/Path", "/Status/Network/7",
                   "/Configuration/Network/2"):
        empty = await xapi.getxml(absent)  # RoomOS: a root EmptyResult, not an error
        assert empty.tag == "EmptyResult" and len(empty) == 0, absent
        assert empty.get("version") == "ce26.4.1.5.1234abcd" and empty.get("apiVersion") == "4"

    for malformed in ("", "/", "/Status/Sys tem", "/Status/[1]"):
        fault = await xapi.getxml(malformed)
        assert fault.tag == "Fault", malformed
        assert fault.find("XPathError").get("type") == "parsing"
        assert fault.findtext("XPathError/ErrorCode") == "10"


async def test_configuration_get_and_set(sim, xapi):
    tree = await xapi.getxml("/Configuration/Network/IEEE8021X")
    mode = tree.find("Network/IEEE8021X/Mode")
    assert mode.text == "Off"
    assert mode.get("valueSpaceRef") == "/Valuespace/TTPAR_OnOff"
    assert tree.find("Network").get("item") == "1"

    ok = await xapi.putxml(
        '<Configuration><Network item="1"><IEEE8021X><Mode>On</Mode>'
        "<Identity>room-001</Identity><Eap><Tls>On</Tls></Eap></IEEE8021X></Network>"
        "<Security><Enrollment><KeySize>4096</KeySize></Enrollment></Security></Configuration>"
    )
    assert ok.tag == "Configuration" and ok.find("Success") is not None
    config = sim.devices["room-001"].config
    assert config["Network[1]/IEEE8021X/Mode"] == "On"
    assert config["Security/Enrollment/KeySize"] == "4096"
    tree = await xapi.getxml("Configuration/Network/1/IEEE8021X/Identity")
    assert tree.findtext("Network/IEEE8021X/Identity") == "room-001"
    status = await xapi.getxml("/Status/Network/1/IEEE8021X/Status")
    assert status.findtext("Network/IEEE8021X/Status") == "AuthFailed"  # no 802.1X cert yet

    illegal = await xapi.putxml(
        '<Configuration><Network item="1"><IEEE8021X><Mode>Maybe</Mode>'
        "</IEEE8021X></Network></Configuration>"
    )
    bad = illegal.find("Network/IEEE8021X/Mode")
    assert bad.get("error") == "True" and bad.text == "Illegal value"
    assert illegal.find("Network").get("item") == "1"
    assert config["Network[1]/IEEE8021X/Mode"] == "On"  # nothing applied

    no_match = await xapi.putxml(
        "<Configuration><Network><IEEE8021X><Nope>1</Nope></IEEE8021X></Network></Configuration>"
    )
    assert no_match.get("status") == "Error"
    assert no_match.findtext("Reason") == "No match on address expression"
    assert no_match.findtext("XPath") == "Configuration/Network/IEEE8021X/Nope"


# ---------------------------------------------------------------- auth, sessions


async def test_wrong_password_gets_real_401(xapi_for):
    client = xapi_for(auth=("admin", "wrong"))
    response = await client.client.get("/getxml", params={"location": "/Status/SystemUnit"})
    assert response.status_code == 401
    assert response.headers["content-type"] == "text/plain; charset=UTF-8"
    assert response.headers["www-authenticate"] == 'Basic realm="CISCO-Endpoint"'
    assert response.text.startswith(UNAUTHORIZED_START)

    anonymous = xapi_for(auth=None)
    assert (await anonymous.client.get("/getxml?location=/Status")).status_code == 401


async def test_lockout_after_five_failures(sim_factory, xapi_for):
    sim = sim_factory(devices=1, lockout_seconds=0.6)
    await sim.start()
    try:
        bad = xapi_for(fleet=sim, auth=("admin", "nope"))
        good = xapi_for(fleet=sim)
        assert (await good.client.get("/getxml?location=/Status")).status_code == 200
        for _ in range(5):
            assert (await bad.client.get("/getxml?location=/Status")).status_code == 401
        locked = await good.client.get("/getxml?location=/Status")
        assert locked.status_code == 401  # right password, but locked out
        assert sim.devices["room-001"].failed_logins == 6
        await asyncio.sleep(0.7)
        assert (await good.client.get("/getxml?location=/Status")).status_code == 200
    finally:
        await sim.stop()


async def test_session_begin_use_end(sim, xapi_for):
    client = xapi_for()
    begin = await client.client.post("/xmlapi/session/begin")
    assert begin.status_code == 204
    set_cookie = begin.headers["set-cookie"]
    assert set_cookie.startswith("SessionId=")
    assert "Path=/" in set_cookie and "HttpOnly" in set_cookie and "Secure" in set_cookie
    session_id = begin.cookies["SessionId"]

    cookie_only = xapi_for(auth=None, cookies={"SessionId": session_id})
    root = await cookie_only.getxml("/Status/SystemUnit/ProductId")
    assert root.findtext("SystemUnit/ProductId") == "Cisco Board Pro"

    end = await cookie_only.client.post("/xmlapi/session/end")
    assert end.status_code == 204
    after = await cookie_only.client.get("/getxml?location=/Status")
    assert after.status_code == 401

    unknown = xapi_for(auth=None, cookies={"SessionId": "not-a-session"})
    assert (await unknown.client.get("/getxml?location=/Status")).status_code == 401


async def test_session_caps(sim, xapi_for):
    client = xapi_for()
    for _ in range(20):
        assert (await client.client.post("/xmlapi/session/begin")).status_code == 204
        client.client.cookies.clear()
    over = await client.client.post("/xmlapi/session/begin")
    assert over.status_code == 503 and "Too many sessions" in over.text


# ---------------------------------------------------------------- rate limits


async def test_basic_auth_real_queue_semantics(sim_factory, xapi_for):
    """Real defaults (1/s, queue 30): of 32 requests at once one runs, thirty wait, one gets 503."""
    sim = sim_factory(devices=1, basic_rate=1.0, basic_queue=30)
    await sim.start()
    try:
        client = xapi_for(fleet=sim, limits=httpx.Limits(max_connections=40))
        tasks = [
            asyncio.ensure_future(client.client.get("/getxml?location=/Status/SystemUnit/Uptime"))
            for _ in range(32)
        ]
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            done = [t for t in tasks if t.done()]
            if any(t.result().status_code == 503 for t in done):
                break
            await asyncio.sleep(0.02)
        statuses = [t.result().status_code for t in tasks if t.done()]
        assert statuses.count(503) == 1
        assert statuses.count(200) >= 1
        pending = sum(not t.done() for t in tasks)
        assert pending == 31 - statuses.count(200)
        assert pending >= 28  # queued behind the 1/s limit (the last one waits ~30 s)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await sim.stop()


async def test_session_rate_limit_queue_and_pacing(sim_factory, xapi_for):
    sim = sim_factory(devices=1, session_rate=4.0, session_queue=3)
    await sim.start()
    try:
        opener = xapi_for(fleet=sim)
        session_id = (await opener.client.post("/xmlapi/session/begin")).cookies["SessionId"]
        client = xapi_for(fleet=sim, auth=None, cookies={"SessionId": session_id})
        started = time.monotonic()
        responses = await asyncio.gather(
            *(client.client.get("/getxml?location=/Status/SystemUnit/Uptime") for _ in range(8))
        )
        elapsed = time.monotonic() - started
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] * 7 + [503]  # burst 4 + queue 3, the eighth is refused
        assert 0.6 < elapsed < 3.0  # the three queued ones are paced at 4/s
    finally:
        await sim.stop()


# ---------------------------------------------------------------- putxml wire shapes


async def test_parameter_errors(xapi):
    def services(inner: str) -> str:
        return (
            "<Command><Security><Certificates><Services>"
            f"{inner}</Services></Certificates></Security></Command>"
        )

    cases = {
        '<Activate command="True"><Fingerprint>abc</Fingerprint></Activate>': "Purpose",
        "<Activate><Fingerprint>abc</Fingerprint><Purpose>Bogus</Purpose></Activate>": "Bogus",
        f"<Activate><Fingerprint>{'a' * 1025}</Fingerprint><Purpose>HTTPS</Purpose></Activate>": (
            "1024"
        ),
        f"<Delete><Fingerprint>{'a' * 129}</Fingerprint></Delete>": "128",
        "<Delete><Fingerprint>a</Fingerprint><Colour>red</Colour></Delete>": "Colour",
        "<Show><Format>Yaml</Format></Show>": "Format",
    }
    for inner, mention in cases.items():
        reply = await xapi.putxml(services(inner))
        result = reply[0]
        assert result.tag.startswith("Services") and result.tag.endswith("Result")
        assert result.get("status") == "ParameterError", inner
        assert mention in result.findtext("Reason"), (inner, result.findtext("Reason"))

    ok = await xapi.putxml(services("<Show><Format>text</Format></Show>"))
    assert ok.find("ServicesShowResult").get("status") == "OK"  # literals: any case


async def test_unknown_command_and_action_errors(xapi):
    alone = await xapi.putxml(
        '<Command><Security><Certificates><Foo command="True"/></Certificates></Security></Command>'
    )
    assert alone.tag == "ActionError"  # nothing in the document is a command the device has
    assert alone.findtext("Reason") == "No action detected in document"
    mixed = await xapi.putxml(
        '<Command><Security><Certificates><Foo command="True"/><CA><Show/></CA></Certificates>'
        "</Security></Command>"
    )
    result = mixed.find("Result")
    assert mixed.tag == "Command" and result.get("status") == "Error"
    assert result.findtext("Reason") == "Unknown command"
    assert result.findtext("XPath") == "/Security/Certificates/Foo"
    assert mixed.find("CAShowResult").get("status") == "OK"

    billion_laughs = (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
        '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
        "<Command><Security><Certificates><CA><Add><body>&lol3;</body></Add></CA>"
        "</Certificates></Security></Command>"
    )
    external = (
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        "<Command><SystemUnit><Boot><Action>&e;</Action></Boot></SystemUnit></Command>"
    )
    no_action = [
        "<Command><NonExistent><Fake><Path/></Fake></NonExistent></Command>",
        "<Command/>",
        "<Status><SystemUnit/></Status>",
    ]
    for body in [billion_laughs, external, *no_action]:
        reply = await xapi.putxml(body)
        assert reply.tag == "ActionError", body
        assert reply.findtext("Reason"), body
    for body in no_action:
        assert (await xapi.putxml(body)).findtext("Reason") == "No action detected in document"

    for malformed in ("this is < not xml", "", "<Command><SystemUnit><Boot></Command>"):
        response = await xapi.client.post(
            "/putxml", content=malformed, headers={"Content-Type": "text/xml"})
        assert response.status_code == 400, malformed
        assert response.headers["content-type"].startswith("text/plain")
        assert response.text.startswith("XML syntax error: "), response.text


async def test_reply_is_real_shape(xapi):
    response = await xapi.client.post(
        "/putxml",
        content="<Command><Security><Certificates><CA><Show/></CA></Certificates></Security>"
        "</Command>",
    )
    assert response.text.startswith(
        '<?xml version="1.0"?>\n<Command>\n  <CAShowResult status="OK">'
    )


async def test_unknown_device_name_for_faults(sim: SimFleet):
    with pytest.raises(KeyError):
        sim.set_fault("room-999", garbage=True)
