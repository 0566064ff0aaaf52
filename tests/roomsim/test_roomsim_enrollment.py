"""On-device SCEP enrollment, renewal profiles, Wi-Fi and 802.1X status, against roomsim over
HTTPS with hand-written XML, and a real SCEP server (Debian's `scep`, micromdm scepserver
2.1.0) kept on 127.0.0.1 by tests/scep_fixture.py."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from xml.sax.saxutils import escape

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from scep_fixture import ScepServer, free_port

from certfleet.roomsim.enrollment import EnrollmentProfile

SCEP_ISSUER = "/C=US/O=scep-ca/OU=SCEP CA"
ENROLL = "Security/Certificates/Services/Enrollment/"
SERVICES = "Security/Certificates/Services/"


# ---------------------------------------------------------------- a real SCEP server


@dataclass(frozen=True)
class Scep:
    url: str
    sha256: str
    ca: x509.Certificate
    challenge: str

    @property
    def sha1(self) -> str:
        return self.ca.fingerprint(hashes.SHA1()).hex()


def _scep(server: ScepServer) -> Scep:
    return Scep(server.url, server.ca_sha256, server.ca, server.challenge)


@pytest.fixture
def scep(scep_servers: Callable[..., ScepServer]) -> Scep:
    return _scep(scep_servers("main"))


@pytest.fixture
def scep_short(scep_servers: Callable[..., ScepServer]) -> Scep:
    """A second CA whose certificates are valid for 10 days: due for renewal at once."""
    return _scep(scep_servers("short", crtvalid_days=10))


# ---------------------------------------------------------------- XML by hand


def cmd(path: str, **params: str | list[str]) -> str:
    inner = ""
    for name, value in params.items():
        if isinstance(value, list):
            inner += "".join(
                f'<{name} item="{n}">{escape(v)}</{name}>' for n, v in enumerate(value, 1)
            )
        else:
            inner += f"<{name}>{escape(value)}</{name}>"
    *parents, leaf = path.split("/")
    xml = f"<{leaf}>{inner}</{leaf}>"
    for parent in reversed(parents):
        xml = f"<{parent}>{xml}</{parent}>"
    return f"<Command>{xml}</Command>"


def config(path: str, value: str) -> str:
    *parents, leaf = path.split("/")
    xml = f"<{leaf}>{escape(value)}</{leaf}>"
    for parent in reversed(parents):
        name, _, item = parent.partition("[")
        attr = f' item="{item.rstrip("]")}"' if item else ""
        xml = f"<{name}{attr}>{xml}</{name}>"
    return f"<Configuration>{xml}</Configuration>"


async def run(xapi, path: str, tag: str, **params: str | list[str]):
    reply = await xapi.putxml(cmd(path, **params))
    result = reply.find(tag)
    assert result is not None, [c.tag for c in reply]
    return result


async def scep_request(xapi, server: Scep, **overrides: str | list[str]):
    params: dict[str, str | list[str]] = {
        "URL": server.url,
        "Fingerprint": server.sha256,
        "CommonName": "room-001.example.com",
        "ChallengePassword": server.challenge,
    }
    params.update(overrides)
    return await run(xapi, ENROLL + "SCEP/Request", "SCEPRequestResult", **params)


async def set_config(xapi, path: str, value: str) -> None:
    reply = await xapi.putxml(config(path, value))
    assert reply.find("Success") is not None, reply


async def status(xapi, path: str) -> str:
    return (await xapi.getxml("/Status/" + path)).findtext(path.replace("[1]", ""))


def state_json(sim, name: str = "room-001") -> str:
    return (sim.state_dir / "devices" / name / "state.json").read_text()


def saved_fingerprints(sim, name: str = "room-001") -> list[str]:
    """SHA-1 of every service certificate in the device's state file."""
    services = json.loads(state_json(sim, name))["services"]
    return [
        x509.load_pem_x509_certificate(s["cert"].encode()).fingerprint(hashes.SHA1()).hex()
        for s in services
    ]


async def add_8021x_cert(xapi) -> str:
    issued = trustme.CA().issue_cert("room-001.example.com")
    body = "".join(p.bytes().decode() for p in issued.cert_chain_pems)
    body += issued.private_key_pem.bytes().decode()
    reply = await xapi.putxml(
        cmd(SERVICES + "Add").replace("</Add>", f"<body>{escape(body)}</body></Add>")
    )
    assert reply.find("ServicesAddResult").get("status") == "OK"
    fingerprint = (
        x509.load_pem_x509_certificate(issued.cert_chain_pems[0].bytes())
        .fingerprint(hashes.SHA1())
        .hex()
    )
    await activate(xapi, fingerprint, "802.1X")
    return fingerprint


async def activate(xapi, fingerprint: str, purpose: str) -> None:
    result = await run(
        xapi,
        SERVICES + "Activate",
        "ServicesActivateResult",
        Fingerprint=fingerprint,
        Purpose=purpose,
    )
    assert result.get("status") == "OK", result.findtext("Reason")


async def add_ca(xapi) -> None:
    pem = trustme.CA().cert_pem.bytes().decode()
    reply = await xapi.putxml(
        cmd("Security/Certificates/CA/Add").replace("</Add>", f"<body>{pem}</body></Add>")
    )
    assert reply.find("CAAddResult").get("status") == "OK"


# ---------------------------------------------------------------- SCEP Request


async def test_scep_request_enrolls_a_device_key(sim, xapi, scep, caplog):
    caplog.set_level(logging.DEBUG)
    device = sim.devices["room-001"]
    https_before = device.https_certificate().fingerprint
    await set_config(xapi, "Security/Enrollment/KeySize", "3072")

    result = await scep_request(
        xapi,
        scep,
        CountryName="NO",
        StateOrProvinceName="Oslo",
        LocalityName="Oslo",
        OrganizationName="Example AS",
        OrganizationalUnit=["AV", "Rooms"],
        SanDns=["room-001.example.com", "room-001"],
        SanEmail=["av@example.com"],
        SanIp=["192.0.2.10"],
        SanUri=["urn:room:001"],
    )
    assert result.get("status") == "OK", result.findtext("Reason")
    fingerprint = result.findtext("CertFingerprint")
    assert len(fingerprint) == 40 and fingerprint == fingerprint.lower()

    service = device.store.find_service(fingerprint)
    assert service is not None and service.purposes == []
    cert = service.cert
    assert cert.fingerprint(hashes.SHA1()).hex() == fingerprint
    cert.verify_directly_issued_by(scep.ca)
    assert [(a.oid._name, a.value) for a in cert.subject] == [
        ("countryName", "NO"),
        ("stateOrProvinceName", "Oslo"),
        ("localityName", "Oslo"),
        ("organizationName", "Example AS"),
        ("organizationalUnitName", "AV"),
        ("organizationalUnitName", "Rooms"),
        ("commonName", "room-001.example.com"),
    ]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["room-001.example.com", "room-001"]
    assert san.get_values_for_type(x509.RFC822Name) == ["av@example.com"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["192.0.2.10"]
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:room:001"]
    key = service.key
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 3072
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert key.public_key().public_bytes(*spki) == cert.public_key().public_bytes(*spki)

    # Services Show lists it (active for nothing); the CA list stays empty; HTTPS unchanged.
    show = await run(xapi, SERVICES + "Show", "ServicesShowResult")
    details = {d.findtext("Fingerprint"): d for d in show.findall("Details")}
    enrolled = details[fingerprint]
    assert enrolled.findtext("IssuerName") == SCEP_ISSUER
    assert enrolled.findtext("SubjectName") == (
        "/C=NO/ST=Oslo/L=Oslo/O=Example AS/OU=AV/OU=Rooms/CN=room-001.example.com"
    )
    assert enrolled.findtext("UsedFor") == "" and enrolled.findtext("PublicKeySize") == "3072"
    assert device.ca_list == []
    assert device.https_certificate().fingerprint == https_before

    # Persisted, without the challenge anywhere (state, logs).
    assert fingerprint in saved_fingerprints(sim)
    assert scep.challenge not in state_json(sim)
    assert scep.challenge not in caplog.text

    # A SHA-1 CA fingerprint (the DevNet macro's) works as well; then activate the new cert.
    again = await scep_request(xapi, scep, Fingerprint=scep.sha1.upper(), CommonName="room-001")
    assert again.get("status") == "OK", again.findtext("Reason")
    await activate(xapi, again.findtext("CertFingerprint"), "802.1X")


async def test_scep_request_failures_change_nothing(sim, xapi, scep, caplog):
    caplog.set_level(logging.DEBUG)
    device = sim.devices["room-001"]
    before_state = state_json(sim)
    before = [s.fingerprint for s in device.services]

    async def stalled(reader, writer):  # accepts, never answers
        await asyncio.sleep(5)
        writer.close()

    stall = await asyncio.start_server(stalled, "127.0.0.1", 0)
    stall_port = stall.sockets[0].getsockname()[1]
    device.scep_timeout = 0.5
    try:
        cases = [
            ({"ChallengePassword": "wrong-challenge"}, "SCEP enrollment rejected: badRequest"),
            ({"ChallengePassword": ""}, "SCEP enrollment rejected: badRequest"),
            ({"Fingerprint": "ab" * 32}, "CA fingerprint mismatch"),
            ({"URL": f"http://127.0.0.1:{free_port()}/scep"}, "SCEP server unreachable: "),
            ({"URL": f"http://127.0.0.1:{stall_port}/scep"}, "SCEP server timeout: "),
            ({"Fingerprint": "not-hex"}, "Invalid Fingerprint"),
            ({"URL": "ftp://ca.example/scep"}, "Invalid URL"),
            ({"SanIp": ["not-an-ip"]}, "Invalid SanIp"),
            ({"SanDns": ["ok.example", "rööm.example"]}, "Invalid SanDns"),
            ({"CountryName": "N"}, "Invalid CountryName"),
        ]
        for overrides, reason in cases:
            result = await scep_request(xapi, scep, **overrides)
            assert result.get("status") == "Error", overrides
            assert result.findtext("Reason").startswith(reason), (
                overrides,
                result.findtext("Reason"),
            )
            assert result.find("CertFingerprint") is None
    finally:
        stall.close()

    bad_params = [
        ({"CommonName": "x" * 65}, "CommonName"),
        ({"OrganizationalUnit": ["u"] * 6}, "OrganizationalUnit"),
        ({"CountryName": "NOR"}, "CountryName"),
    ]
    for overrides, name in bad_params:
        result = await scep_request(xapi, scep, **overrides)
        assert result.get("status") == "ParameterError" and name in result.findtext("Reason")
    missing = await run(xapi, ENROLL + "SCEP/Request", "SCEPRequestResult", URL=scep.url)
    assert missing.get("status") == "ParameterError"

    assert [s.fingerprint for s in device.services] == before
    assert device.ca_list == []
    assert state_json(sim) == before_state
    assert "wrong-challenge" not in caplog.text and scep.challenge not in caplog.text


async def test_key_generation_does_not_stall_other_devices(sim, xapi_for, scep):
    """A 4096-bit key takes a while; meanwhile the other devices keep answering."""
    enrolling, other = xapi_for("room-002"), xapi_for("room-001")
    await set_config(enrolling, "Security/Enrollment/KeySize", "4096")
    began = time.perf_counter()
    task = asyncio.create_task(scep_request(enrolling, scep, CommonName="room-002"))
    slowest = 0.0
    while not task.done():
        started = time.perf_counter()
        assert await status(other, "SystemUnit/ProductId") == "Cisco Board Pro"
        slowest = max(slowest, time.perf_counter() - started)
    assert (await task).get("status") == "OK"
    took = time.perf_counter() - began
    # a stalled loop would hold an answer for most of the enrollment; on a loaded machine
    # (parallel test workers) an answer may take a little longer than 0.3 s for other reasons
    assert slowest < max(0.3, took / 4), (slowest, took)
    assert sim.devices["room-002"].services[-1].key.key_size == 4096


# ---------------------------------------------------------------- profiles and renewal


async def test_profiles_set_list_delete_persist(sim_factory, xapi_for, scep):
    fleet = sim_factory(devices=1)
    await fleet.start()
    try:
        xapi = xapi_for(fleet=fleet)
        sha1_colons = ":".join(scep.sha1[i : i + 2] for i in range(0, 40, 2)).upper()
        for fingerprint, url in (
            (scep.sha256, "http://old.example/scep"),
            (scep.sha256, scep.url),  # same CA again: replaces
            (sha1_colons, "http://other.example:8080/scep"),
        ):
            result = await run(
                xapi,
                ENROLL + "SCEP/Profiles/Set",
                "ProfilesSetResult",
                Fingerprint=fingerprint,
                URL=url,
                ChallengePassword="profile-secret",
            )
            assert result.get("status") == "OK", result.findtext("Reason")

        reply = await xapi.putxml(cmd(ENROLL + "Profiles/List"))
        listed = reply.find("ProfilesListResult")
        assert listed.get("status") == "OK"
        profiles = [
            (p.get("item"), p.findtext("Fingerprint"), p.findtext("URL"))
            for p in listed.findall("Profile")
        ]
        assert profiles == [
            ("1", scep.sha256, scep.url),
            ("2", scep.sha1, "http://other.example:8080/scep"),
        ]
        assert [c.tag for c in listed.find("Profile")] == ["Fingerprint", "URL"]
        raw = await xapi.client.post("/putxml", content=cmd(ENROLL + "Profiles/List"))
        assert "profile-secret" not in raw.text

        for bad, reason in (("00" * 20, "No enrollment profile"), ("zz", "Invalid Fingerprint")):
            failed = await run(
                xapi, ENROLL + "Profiles/Delete", "ProfilesDeleteResult", Fingerprint=bad
            )
            assert failed.get("status") == "Error" and reason in failed.findtext("Reason")
        bad_set = await run(
            xapi, ENROLL + "SCEP/Profiles/Set", "ProfilesSetResult", Fingerprint="12", URL=scep.url
        )
        assert bad_set.get("status") == "Error"
        deleted = await run(
            xapi, ENROLL + "Profiles/Delete", "ProfilesDeleteResult", Fingerprint=sha1_colons
        )
        assert deleted.get("status") == "OK"
    finally:
        await fleet.stop()

    again = sim_factory(devices=1)
    await again.start()
    try:
        device = again.devices["room-001"]
        assert device.profiles == [
            {"fingerprint": scep.sha256, "url": scep.url, "challenge": "profile-secret"}
        ]
    finally:
        await again.stop()


async def test_renewal_replaces_expiring_certificate_and_keeps_purposes(
    sim, xapi, scep, scep_short
):
    device = sim.devices["room-001"]
    short = await scep_request(
        xapi, scep_short, CommonName="room-001.example.com", SanDns=["room-001.example.com"]
    )
    assert short.get("status") == "OK", short.findtext("Reason")
    old_fp = short.findtext("CertFingerprint")
    await activate(xapi, old_fp, "802.1X")
    await activate(xapi, old_fp, "SIP")
    long = await scep_request(xapi, scep, CommonName="room-001-long")
    long_fp = long.findtext("CertFingerprint")
    old = device.store.find_service(old_fp)
    position = device.services.index(old)

    # No profile: nothing renewed. A profile that pins another CA: an error, nothing changed.
    assert await device.run_renewal_check() == []
    await run(
        xapi,
        ENROLL + "SCEP/Profiles/Set",
        "ProfilesSetResult",
        Fingerprint=scep.sha256,
        URL=scep_short.url,
    )
    mismatch = (await sim.run_renewal("room-001"))["room-001"]
    assert [(r.old_fingerprint, r.error) for r in mismatch] == [(None, "CA fingerprint mismatch")]
    assert device.store.find_service(old_fp) is old
    await run(xapi, ENROLL + "Profiles/Delete", "ProfilesDeleteResult", Fingerprint=scep.sha256)

    await run(
        xapi,
        ENROLL + "SCEP/Profiles/Set",
        "ProfilesSetResult",
        Fingerprint=scep_short.sha1,
        URL=scep_short.url,
        ChallengePassword=scep_short.challenge,
    )
    results = (await sim.run_renewal())["room-001"]
    assert len(results) == 1 and results[0].ok, results
    new_fp = results[0].new_fingerprint
    assert results[0].old_fingerprint == old_fp and new_fp != old_fp

    assert device.store.find_service(old_fp) is None
    new = device.store.find_service(new_fp)
    assert device.services.index(new) == position
    assert new.purposes == ["802.1X", "SIP"]
    assert new.cert.subject == old.cert.subject
    assert new.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value == (
        old.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    )
    new.cert.verify_directly_issued_by(scep_short.ca)
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert new.key.public_key().public_bytes(*spki) != old.key.public_key().public_bytes(*spki)
    assert device.store.find_service(long_fp) is not None  # another CA, 365 days: untouched

    show = await run(xapi, SERVICES + "Show", "ServicesShowResult", Filter="802.1X")
    assert next(d.findtext("Fingerprint") for d in show.findall("Details")) == new_fp
    saved = saved_fingerprints(sim)
    assert new_fp in saved and old_fp not in saved


async def test_renewal_timer(sim_factory, xapi_for, scep_short):
    fleet = sim_factory(devices=1, renewal_interval=0.2)
    await fleet.start()
    try:
        xapi = xapi_for(fleet=fleet)
        enrolled = await scep_request(xapi, scep_short, CommonName="room-timer")
        old_fp = enrolled.findtext("CertFingerprint")
        device = fleet.devices["room-001"]
        device.profiles.append(
            EnrollmentProfile(
                fingerprint=scep_short.sha256, url=scep_short.url, challenge=scep_short.challenge
            )
        )
        for _ in range(50):
            await asyncio.sleep(0.1)
            if device.store.find_service(old_fp) is None:
                break
        assert device.store.find_service(old_fp) is None
        assert any(s.cert.subject.rfc4514_string() == "CN=room-timer" for s in device.services)
    finally:
        await fleet.stop()


# ---------------------------------------------------------------- Wi-Fi


async def test_wifi_configure_list_delete_and_status(sim, xapi):
    wifi = "Network/Wifi/"
    assert await status(xapi, "Network[1]/Wifi/Status") == "Disconnected"

    configured = await run(
        xapi,
        wifi + "Configure",
        "WifiConfigureResult",
        SSID="corp",
        Type="Enterprise-Tls",
        Identity="room-001",
        Password="wifi-secret",
    )
    assert configured.get("status") == "OK" and configured.findtext("ProfileID") == "1"
    tree = await xapi.getxml("/Status/Network/1/Wifi")
    assert tree.findtext("Network/Wifi/Status") == "AuthFailed"  # no 802.1X certificate
    assert tree.findtext("Network/Wifi/SSID") == "corp"
    # the status value space of Network Wifi Type still has only the older names (26.4.1)
    assert tree.findtext("Network/Wifi/Type") == "Wpa2-eap-tls"

    await add_8021x_cert(xapi)
    assert (
        await status(xapi, "Network[1]/Wifi/Status") == "AuthFailed"
    )  # no CA, AllowMissingCA False
    await run(
        xapi,
        wifi + "Configure",
        "WifiConfigureResult",
        SSID="corp",
        Type="Wpa2-eap-tls",
        AllowMissingCA="True",
    )
    assert await status(xapi, "Network[1]/Wifi/Status") == "Connected"
    await run(xapi, wifi + "Configure", "WifiConfigureResult", SSID="corp", Type="Enterprise-Tls")
    await add_ca(xapi)
    assert await status(xapi, "Network[1]/Wifi/Status") == "Connected"

    later = await run(
        xapi,
        wifi + "Configure",
        "WifiConfigureResult",
        SSID="guest",
        Type="Wpa2-psk",
        Password="psk-secret",
        Connect="Later",
    )
    assert later.findtext("ProfileID") == "2"
    assert await status(xapi, "Network[1]/Wifi/SSID") == "corp"  # Later: stored, not joined

    reply = await xapi.client.post("/putxml", content=cmd(wifi + "List"))
    assert (
        "wifi-secret" not in reply.text
        and "psk-secret" not in reply.text
        and "Password" not in reply.text
    )
    listed = (await xapi.putxml(cmd(wifi + "List"))).find("WifiListResult")
    assert [
        (
            p.findtext("ProfileID"),
            p.findtext("SSID"),
            p.findtext("Type"),
            p.findtext("Identity"),
            p.findtext("AllowMissingCA"),
        )
        for p in listed.findall("Profile")
    ] == [("1", "corp", "Enterprise-Tls", "", "False"), ("2", "guest", "Personal", "", "False")]

    bad_type = await run(xapi, wifi + "Configure", "WifiConfigureResult", SSID="x", Type="Wep")
    assert bad_type.get("status") == "ParameterError"
    for params in ({}, {"ProfileID": "9"}, {"ProfileID": "1", "SSID": "guest"}):
        failed = await run(xapi, wifi + "Delete", "WifiDeleteResult", **params)
        assert failed.get("status") == "Error", params
    deleted = await run(xapi, wifi + "Delete", "WifiDeleteResult", SSID="corp")
    assert deleted.get("status") == "OK"
    assert await status(xapi, "Network[1]/Wifi/Status") == "Disconnected"
    assert (await run(xapi, wifi + "Delete", "WifiDeleteResult", ProfileID="2")).get(
        "status"
    ) == "OK"
    assert sim.devices["room-001"].wifi == []


# ---------------------------------------------------------------- wired 802.1X


async def test_8021x_status_transitions(sim, xapi):
    dot1x = "Network[1]/IEEE8021X/"

    async def link() -> tuple[str, str]:
        tree = await xapi.getxml("/Status/Network/1/IEEE8021X")
        return tree.findtext("Network/IEEE8021X/Status"), tree.findtext("Network/IEEE8021X/Reason")

    assert await link() == ("Off", "")
    await set_config(xapi, dot1x + "UseClientCertificate", "On")
    await set_config(xapi, dot1x + "TlsVerify", "On")
    await set_config(xapi, dot1x + "Mode", "On")
    state, reason = await link()
    assert state == "AuthFailed" and "No certificate" in reason

    fingerprint = await add_8021x_cert(xapi)
    state, reason = await link()
    assert state == "AuthFailed" and "CA list is empty" in reason
    await add_ca(xapi)
    assert await link() == ("Connected", "")

    ca = sim.devices["room-001"].ca_list[0].fingerprint
    await run(xapi, "Security/Certificates/CA/Delete", "CADeleteResult", Fingerprint=ca)
    assert (await link())[0] == "AuthFailed"
    await set_config(xapi, dot1x + "TlsVerify", "Off")
    assert await link() == ("Connected", "")

    await run(
        xapi,
        SERVICES + "Deactivate",
        "ServicesDeactivateResult",
        Fingerprint=fingerprint,
        Purpose="802.1X",
    )
    assert (await link())[0] == "AuthFailed"

    # Without a client certificate the password methods (PEAP …) need Identity and Password.
    await set_config(xapi, dot1x + "UseClientCertificate", "Off")
    assert (await link())[0] == "AuthFailed"
    await set_config(xapi, dot1x + "Identity", "room-001")
    await set_config(xapi, dot1x + "Password", "radius-secret")
    assert await link() == ("Connected", "")
    await set_config(xapi, dot1x + "Mode", "Off")
    assert await link() == ("Off", "")

    peripherals = await xapi.getxml(
        "/Configuration/Peripherals/Security/Certificates/SyncToPeripherals"
    )
    enabled = peripherals.find("Peripherals/Security/Certificates/SyncToPeripherals/Enabled")
    assert enabled.text == "True" and enabled.get("valueSpaceRef") == "/Valuespace/TTPAR_TrueFalse"
