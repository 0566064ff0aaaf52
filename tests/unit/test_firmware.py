"""Each release's parameter choice, and what a release lacks is never sent (issue 15 part 3).

The release model is the real one (generated from Cisco's schemas); the device is a recording
transport under the production :class:`Xapi` (the wire has its own tests), so what would be
sent is exactly what the plans ask for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography import x509

from certfleet.fleet.errors import DeviceSkipped, NotSupportedError, ParameterError
from certfleet.fleet.firmware import Firmware, firmware_of
from certfleet.fleet.inventory import Device, load_inventory
from certfleet.fleet.pki.certs import CaCertificate
from certfleet.fleet.plans.base import DeviceContext
from certfleet.fleet.plans.enroll import Enroll, ScepTarget
from certfleet.fleet.plans.network import Dot1x, Wifi, wifi_parameters
from certfleet.fleet.plans.push_ca import PushCa
from certfleet.fleet.plans.renewal import RenewalList, RenewalSet, renewal_challenge
from certfleet.fleet.results import DeviceResult, Outcome, RunResult
from certfleet.fleet.secrets import Secret
from certfleet.fleet.xapi.commands import Xapi
from certfleet.fleet.xapi.transport import ParamValue

WIFI = ("Network", "Wifi", "Configure")
PROFILES_SET = ("Security", "Certificates", "Services", "Enrollment", "SCEP", "Profiles", "Set")


def unit(version: str, product: str = "Cisco Room Bar", platform: str = "Room Bar") -> dict[str,
                                                                                          Any]:
    return {"ProductId": product, "ProductPlatform": platform,
            "Software": {"Version": version, "DisplayName": f"RoomOS {version}"}}


class Recorder:
    """Under Xapi: records what would go on the wire, answers OK."""

    name = "local"

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def command(self, path: Sequence[str], params: Mapping[str, ParamValue] | None = None,
                      body: str | None = None, *, idempotent: bool = False) -> dict[str, Any]:
        self.sent.append((" ".join(path), dict(params or {})))
        return {}

    async def get(self, path: Sequence[str | int]) -> Any:
        return None

    async def configure(self, path: Sequence[str | int], value: str) -> None:
        self.sent.append((" ".join(map(str, path)), {"value": value}))


@pytest.fixture
def devices(tmp_path: Path) -> dict[str, Device]:
    inv = tmp_path / "inv.yaml"
    inv.write_text(
        "defaults: {username: admin, password: 'env:CF_PW', verify: insecure}\n"
        "devices:\n"
        "  room-007: {host: 127.0.0.1, port: 8443}\n"
        "  room-long:\n"
        "    host: 127.0.0.1\n"
        "    certificate:\n"
        "      subject: {CN: room-long, C: NO, L: " + "L" * 100 + "}\n"
        "      san_dns: [" + "d" * 60 + ".room.example.com]\n"
    )
    return load_inventory(inv).devices


def context(device: Device, version: str, **product: str) -> tuple[DeviceContext, Recorder]:
    wire = Recorder()
    fw = firmware_of(unit(version, **product))
    ctx = DeviceContext(device=device, xapi=Xapi(wire, firmware=fw),  # type: ignore[arg-type]
                        result=DeviceResult(device.name, device.host, "local"), firmware=fw)
    return ctx, wire


# ------------------------------------------------------------------------ the release


@pytest.mark.parametrize(("reported", "version", "model"), [
    ("ce11.24.1.5.1234abcd", "11.24.1.5", "11.24.1"),
    ("ce9.15.17.4.abc", "9.15.17.4", "9.15.17.4"),
    ("26.7.1.12", "26.7.1.12", "26.4.1"),
    ("ce11.25.1.2.x", "11.25.1.2", "11.24.4.1"),
])
def test_version_product_and_model(reported: str, version: str, model: str) -> None:
    fw = firmware_of(unit(reported))
    assert fw.to_dict() == {"version": version, "reported": reported, "product": "Cisco Room Bar",
                            "platform": "Room Bar", "product_code": "davinci",
                            "release_model": model}


def test_an_unreadable_version_is_checked_against_the_newest_model() -> None:
    fw = firmware_of(unit("banana"))
    assert not fw.known and fw.label == "banana"
    assert fw.to_dict()["version"] is None
    assert fw.model.release == "26.4.1"


# ------------------------------------------------------------------ Wi-Fi Type / Connect


@pytest.mark.parametrize(("version", "wifi_type", "connect"), [
    ("ce9.15.17.4.x", "Wpa-eap-tls", None),
    ("ce10.19.4.2.x", "Wpa2-eap-tls", None),
    ("ce11.24.1.5.x", "Wpa2-eap-tls", None),
    ("ce11.26.1.1.x", "Wpa2-eap-tls", None),
    ("ce11.27.2.0.x", "Enterprise-Tls", None),
    ("26.1.1.3", "Enterprise-Tls", "Auto"),
    ("26.4.1.1", "Enterprise-Tls", "Auto"),
])
async def test_wifi_type_and_connect_per_release(devices: dict[str, Device], version: str,
                                                 wifi_type: str, connect: str | None) -> None:
    ctx, wire = context(devices["room-007"], version)
    assert wifi_parameters(ctx) == (wifi_type, connect)
    plan = Wifi(ssid="corp", identity=lambda d: d.name, force=True)
    state = await plan.read(ctx)
    changes = plan.diff(ctx, state)
    await plan.apply(ctx, state, changes)
    sent = dict(wire.sent)[" ".join(WIFI)]
    assert sent["Type"] == wifi_type
    assert sent.get("Connect") == connect
    assert ctx.firmware is not None and ctx.firmware.has(WIFI, sent)


async def test_wifi_skips_a_product_without_wifi(devices: dict[str, Device]) -> None:
    ctx, wire = context(devices["room-007"], "ce11.24.1.5.x", product="Cisco Room Navigator",
                        platform="Room Navigator")
    with pytest.raises(DeviceSkipped) as info:
        await Wifi(ssid="corp", identity=lambda d: d.name).read(ctx)
    assert "Wi-Fi" in info.value.message and "room-007 runs 11.24.1.5" in info.value.message
    assert wire.sent == []


async def test_dot1x_sends_only_configurations_the_release_has(
        devices: dict[str, Device]) -> None:
    ctx, _ = context(devices["room-007"], "ce9.15.17.4.x")
    wanted = Dot1x(identity=lambda d: d.name).desired(devices["room-007"], ctx)
    assert list(wanted)[-1] == "Mode"
    assert all(ctx.firmware is not None and ctx.firmware.has_configuration(
        ("Network", 1, "IEEE8021X", *key.split("/"))) for key in wanted)


# ------------------------------------------------------ the renewal profile's challenge


@pytest.mark.parametrize(("version", "sends_challenge"), [
    ("ce11.23.1.1.x", False), ("ce11.24.1.5.x", False), ("ce11.27.2.0.x", False),
    ("26.1.1.0", True), ("26.4.1.2", True),
])
async def test_profile_challenge_only_from_26_1_1(devices: dict[str, Device], version: str,
                                                  sends_challenge: bool) -> None:
    ctx, wire = context(devices["room-007"], version)
    challenge = Secret("renew-challenge-1")
    kept, note = renewal_challenge(ctx, challenge)
    assert (kept is challenge) is sends_challenge
    assert (note is None) is sends_challenge
    plan = RenewalSet(ca_fingerprint="ab" * 20, url="http://127.0.0.1:8080/scep",
                      challenge=challenge)
    state = await plan.read(ctx)
    await plan.apply(ctx, state, plan.diff(ctx, state))
    sent = dict(wire.sent)[" ".join(PROFILES_SET)]
    assert ("ChallengePassword" in sent) is sends_challenge
    if not sends_challenge:
        assert "26.1.1" in ctx.result.message and "without its challenge" in ctx.result.message


async def test_xapi_refuses_to_send_a_challenge_11_24_lacks(devices: dict[str, Device]) -> None:
    ctx, wire = context(devices["room-007"], "ce11.24.1.5.x")
    with pytest.raises(ParameterError, match="ChallengePassword") as info:
        await ctx.xapi.profiles_set("ab" * 20, "http://127.0.0.1/scep", Secret("s3cret-xyz"))
    assert "s3cret-xyz" not in str(info.value)
    with pytest.raises(ParameterError, match="Connect"):
        await ctx.xapi.wifi_configure(ssid="corp", wifi_type="Wpa2-eap-tls", identity=None,
                                      allow_missing_ca=False, connect="Auto")
    assert wire.sent == []


# -------------------------------------------------------------- SCEP and what a release lacks


def scep_ca() -> CaCertificate:
    ca = trustme.CA()
    return CaCertificate.from_cert(x509.load_pem_x509_certificate(ca.cert_pem.bytes()),
                                   source="scep")


def enroll_plan() -> Enroll:
    target = ScepTarget(url="http://127.0.0.1:8080/scep", ca=scep_ca())
    return Enroll(scep=target, purposes=("802.1X",), challenge=lambda d: Secret("chal-123"),
                  renewal_profile=True)


@pytest.mark.parametrize("version", ["ce9.15.17.4.x", "ce10.19.4.2.x"])
async def test_enroll_is_skipped_where_there_is_no_scep(devices: dict[str, Device],
                                                        version: str) -> None:
    ctx, wire = context(devices["room-007"], version, product="Cisco Room Kit",
                        platform="Room Kit")
    with pytest.raises(DeviceSkipped) as info:
        await enroll_plan().read(ctx)
    assert info.value.message == (
        f"SCEP enrollment needs RoomOS 11.23.1 or later; room-007 runs {version[2:-2]} "
        "on a Cisco Room Kit")
    assert wire.sent == []


@pytest.mark.parametrize("plan", [RenewalList(), RenewalSet(ca_fingerprint="ab" * 20, url="u")])
async def test_renewal_verbs_are_skipped_on_10_19(devices: dict[str, Device], plan: Any) -> None:
    ctx, wire = context(devices["room-007"], "ce10.19.4.2.x")
    with pytest.raises(DeviceSkipped, match=r"needs RoomOS 11\.23\.1 or later; room-007 runs"):
        await plan.read(ctx)
    assert wire.sent == []


async def test_tolerant_profiles_list_sends_nothing_where_the_command_is_missing(
        devices: dict[str, Device]) -> None:
    ctx, wire = context(devices["room-007"], "ce10.19.4.2.x")
    assert await ctx.xapi.profiles_list(tolerant=True) == []
    with pytest.raises(NotSupportedError):
        await ctx.xapi.profiles_list()
    assert wire.sent == []


@pytest.mark.parametrize(("version", "fails"), [("ce11.24.1.5.x", False), ("26.1.1.0", True),
                                                ("26.4.1.0", True)])
def test_scep_request_lengths_are_checked_before_sending(devices: dict[str, Device],
                                                         version: str, fails: bool) -> None:
    # L of 100 characters and a 82-character DNS SAN: 11.24 takes 128, 26.x only 64
    device = devices["room-long"]
    ctx, wire = context(device, version)
    plan = enroll_plan()
    if not fails:
        plan._check_request(ctx, plan._request(device, None))
        return
    with pytest.raises(ParameterError) as info:
        plan._check_request(ctx, plan._request(device, None))
    message = str(info.value)
    assert "LocalityName" in message and "64" in message and "26." in message
    assert "nothing was sent" in message and wire.sent == []


async def test_sync_to_peripherals_is_left_alone_where_the_product_lacks_it(
        devices: dict[str, Device]) -> None:
    ctx, wire = context(devices["room-007"], "ce10.19.4.2.x", product="Cisco Room Kit",
                        platform="Room Kit")
    plan = PushCa(cas=(), sync_to_peripherals=True)
    state = await plan.read(ctx)
    assert plan.diff(ctx, state) == []
    assert "SyncToPeripherals" in ctx.result.message
    with pytest.raises(NotSupportedError):
        await ctx.xapi.set_configuration(
            ("Peripherals", "Security", "Certificates", "SyncToPeripherals", "Enabled"), "True")
    assert [path for path, _ in wire.sent] == ["Security Certificates CA Show"]


async def test_reboot_leaves_out_force_where_the_product_has_none(
        devices: dict[str, Device]) -> None:
    ctx, wire = context(devices["room-007"], "26.1.1.0")
    await ctx.xapi.reboot()
    assert wire.sent == [("SystemUnit Boot", {"Action": "Restart", "Force": "True"})]


def test_skipped_is_not_failed() -> None:
    import datetime as dt

    run = RunResult(run_id="r", command="c", started=dt.datetime.now(dt.UTC), devices=[
        DeviceResult("a", None, "local", outcome=Outcome.SKIPPED, message="needs 11.23.1"),
        DeviceResult("b", None, "local", outcome=Outcome.OK)])
    assert run.exit_code() == 0
    assert run.counts()["skipped"] == 1
    assert run.devices[0].to_dict()["reason"] == "needs 11.23.1"


def test_firmware_is_a_value() -> None:
    assert isinstance(firmware_of(unit("ce11.24.1.5.x")), Firmware)


@pytest.mark.parametrize(("version", "skipped"), [("ce9.15.17.4.x", True),
                                                  ("ce10.19.4.2.x", True),
                                                  ("ce11.24.1.5.x", False)])
async def test_dot1x_without_a_certificate(devices: dict[str, Device], version: str,
                                           skipped: bool) -> None:
    # no 802.1X certificate: a release that could enroll one fails the guard as before; one
    # that cannot is left alone, saying which release could
    from certfleet.fleet.errors import CertificateCheckError

    ctx, wire = context(devices["room-007"], version, product="Cisco Room Kit",
                        platform="Room Kit")
    plan = Dot1x(identity=lambda d: d.name)
    state = await plan.read(ctx)
    with pytest.raises(DeviceSkipped if skipped else CertificateCheckError) as info:
        plan.diff(ctx, state)
    if skipped:
        assert "SCEP enrollment needs RoomOS 11.23.1 or later" in info.value.message
        assert "push-cert --purpose 802.1X" in info.value.message
    assert all(path.endswith("Show") for path, _ in wire.sent)


def test_devices_reporting_the_same_release_and_product_read_alike() -> None:
    """Each device's report is read on its own terms: the same report gives the same reading
    (and a result dict of its own), a different product or release a different one."""
    raw = {"Software": {"Version": "ce11.24.1.5.abc"}, "ProductId": "Cisco Room Bar",
           "ProductPlatform": "Room Bar"}
    one, two = firmware_of(raw), firmware_of({**raw})
    assert one == two and one.label == "11.24.1.5"
    first = one.to_dict()
    first["version"] = "changed"
    assert two.to_dict()["version"] == "11.24.1.5"
    other = firmware_of({**raw, "ProductId": "Cisco Desk Pro", "ProductPlatform": "Desk Pro"})
    assert other.product == "Cisco Desk Pro" and other.code != one.code
    older = firmware_of({**raw, "Software": {"Version": "ce9.15.17.4"}})
    assert older.label == "9.15.17.4" and older.model.release != one.model.release
