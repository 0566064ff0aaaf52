"""Every verb over the JSON-RPC WebSocket (`transport: websocket`) against roomsim's /ws,
with real TLS: status, push-ca, rotate with the local CA; and the wire's own rules — one
login, a pinned certificate, a reboot in the middle of a connection."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import ssl
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certfleet.fleet.inventory import Device, load_inventory
from certfleet.fleet.pki.certs import fingerprint
from certfleet.fleet.pki.local_ca import LocalCa
from certfleet.fleet.secrets import Secret
from certfleet.fleet.xapi._config import RetryPolicy, Timeouts, ssl_context_for
from certfleet.fleet.xapi.commands import Xapi
from certfleet.fleet.xapi.transport import Exchange
from certfleet.fleet.xapi.websocket import WebSocketTransport

CA_PASS = "ca-passphrase-for-ws-tests-52"
JOURNAL_PASS = "journal-passphrase-for-ws-tests-18"


def ws_inventory(sim: Any, tmp_path: Path, name: str = "ws.yaml", **defaults: Any) -> Path:
    """The sim's own inventory with ``transport: websocket`` in its defaults."""
    inv = yaml.safe_load(sim.inventory_path.read_text())
    inv["defaults"]["transport"] = "websocket"
    inv["defaults"].update(defaults)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(inv))
    return path


def served_der(sim: Any, name: str) -> bytes:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", sim.devices[name].port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def assert_websocket_calls(entry: dict[str, Any]) -> None:
    assert entry["transport"] == "websocket"
    calls = entry["calls"]
    assert (calls[0]["kind"], calls[0]["path"]) == ("session", "ws")
    assert calls[0]["http_status"] == 101
    assert (calls[-1]["kind"], calls[-1]["path"]) == ("session", "ws/close")
    assert [c for c in calls if c["kind"] == "session"] == [calls[0], calls[-1]]  # one login
    assert not any("xmlapi" in c["path"] for c in calls)


def test_status_over_websocket(sim: Any, tmp_path: Path, cli: Any) -> None:
    result = cli("status", "-i", str(ws_inventory(sim, tmp_path)), "-o", "json")
    assert result.exit_code == 0, result.output
    doc = result.json()
    assert doc["summary"]["ok"] == len(sim.devices)
    for entry in doc["devices"]:
        assert_websocket_calls(entry)
        assert entry["facts"]["system"]["product"].startswith("Cisco")
        assert entry["facts"]["system"]["serial"]
        https = [c for c in entry["facts"]["certificates"] if "HTTPS" in c["purposes"]]
        assert len(https) == 1
        assert https[0]["fingerprint"] == hashlib.sha1(served_der(sim, entry["device"])).hexdigest()
        assert https[0]["not_after"]
    assert sim.password not in result.output


def test_status_is_the_same_over_both_wires(sim: Any, tmp_path: Path, cli: Any) -> None:
    over_http = cli("status", "-i", str(sim.inventory_path), "-o", "json")
    over_ws = cli("status", "-i", str(ws_inventory(sim, tmp_path)), "-o", "json")
    assert over_http.exit_code == 0 and over_ws.exit_code == 0, over_ws.output

    def facts(doc: dict[str, Any]) -> dict[str, Any]:
        return {d["device"]: d["facts"] for d in doc["devices"]}

    assert facts(over_ws.json()) == facts(over_http.json())


def test_push_ca_changes_then_is_idempotent(sim: Any, corp_ca: tuple[LocalCa, Path],
                                            tmp_path: Path, cli: Any) -> None:
    ca, ca_file = corp_ca
    inv = str(ws_inventory(sim, tmp_path))
    sha1 = fingerprint(ca.cert)

    first = cli("push-ca", str(ca_file), "-i", inv, "-o", "json")
    assert first.exit_code == 0, first.output
    doc = first.json()
    assert doc["summary"]["changed"] == len(sim.devices)
    for entry in doc["devices"]:
        assert_websocket_calls(entry)
        assert entry["outcome"] == "changed"
        assert [s["action"] for s in entry["steps"]] == ["ca.add"]
        assert sha1 not in entry["fingerprints"]["before"]
        assert sha1 in entry["fingerprints"]["after"]
    for device in sim.devices.values():
        assert sha1 in {c.fingerprint for c in device.ca_list}

    second = cli("push-ca", str(ca_file), "-i", inv, "-o", "json")
    assert second.exit_code == 0, second.output
    assert second.json()["summary"]["ok"] == len(sim.devices)
    for entry in second.json()["devices"]:
        assert entry["steps"] == []
        assert all(c["path"] != "Security/Certificates/CA/Add" for c in entry["calls"])


def test_rotate_with_the_local_ca(sim: Any, lab: Path, tmp_path: Path, cli: Any) -> None:
    # trust the sim CA and the lab CA, so the devices still verify after the rotation
    both = tmp_path / "device-cas.pem"
    both.write_text(sim.ca_pem_path.read_text() + (lab / "ca.pem").read_text())
    inv = str(ws_inventory(
        sim, tmp_path, verify=f"ca:{both}",
        certificate={"key": "ec-p256", "subject": {"O": "Example"}, "san_ip": ["{host}"],
                     "san_dns": ["{name}.rooms.example"]},
    ))
    old = {name: hashlib.sha1(served_der(sim, name)).hexdigest() for name in sim.devices}

    first = cli("rotate", "-i", inv, "--purpose", "HTTPS", "--signer", "local-ca",
                "--ca-dir", str(lab), "--renew-before", "400d", "-o", "json")
    assert first.exit_code == 0, first.output
    doc = first.json()
    assert doc["summary"]["changed"] == len(sim.devices)
    for entry in doc["devices"]:
        assert_websocket_calls(entry)
        name = entry["device"]
        served = x509.load_der_x509_certificate(served_der(sim, name))
        sha1 = hashlib.sha1(served.public_bytes(serialization.Encoding.DER)).hexdigest()
        assert sha1 == entry["fingerprints"]["after"][0]
        assert entry["fingerprints"]["before"] == [old[name]]
        assert served.issuer.rfc4514_string() == "CN=Lab Room CA"
        assert old[name] not in {c.fingerprint for c in sim.devices[name].services}

    second = cli("rotate", "-i", inv, "--purpose", "HTTPS", "--signer", "local-ca",
                 "--ca-dir", str(lab), "--renew-before", "30d", "-o", "json")
    assert second.exit_code == 0, second.output
    assert second.json()["summary"]["ok"] == len(sim.devices)

    status = cli("status", "-i", inv, "-o", "json")
    assert status.exit_code == 0, status.output
    for entry in status.json()["devices"]:
        https = [c for c in entry["facts"]["certificates"] if "HTTPS" in c["purposes"]]
        assert https[0]["issuer"] == "/CN=Lab Room CA"
    everything = first.output + second.output + status.output
    for secret in (CA_PASS, JOURNAL_PASS, sim.password, "PRIVATE KEY"):
        assert secret not in everything


def test_wrong_password_is_one_refused_login(sim: Any, tmp_path: Path, cli: Any) -> None:
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-password\n")
    wrong.chmod(0o600)
    inv = ws_inventory(sim, tmp_path, password=f"file:{wrong}")
    name = next(iter(sim.devices))
    result = cli("status", "-i", str(inv), "--limit", name, "-o", "json")
    assert result.exit_code == 1
    entry = result.json()["devices"][0]
    assert entry["outcome"] == "failed"
    assert entry["error"]["kind"] == "auth"
    logins = [c for c in entry["calls"] if c["kind"] == "session"]
    assert len(logins) == 1 and logins[0]["http_status"] == 403
    assert logins[0].get("attempts", 1) == 1
    assert "not-the-password" not in result.output


def test_pinned_certificate_and_a_wrong_pin(sim: Any, tmp_path: Path, cli: Any) -> None:
    names = list(sim.devices)
    inv = yaml.safe_load(ws_inventory(sim, tmp_path).read_text())
    pin = hashlib.sha256(served_der(sim, names[0])).hexdigest()
    inv["devices"][names[0]]["verify"] = f"pin:sha256:{pin}"
    inv["devices"][names[1]]["verify"] = "pin:sha256:" + "00" * 32
    path = tmp_path / "pinned.yaml"
    path.write_text(yaml.safe_dump(inv))
    result = cli("status", "-i", str(path), "--limit", f"{names[0]},{names[1]}", "-o", "json")
    by_name = {d["device"]: d for d in result.json()["devices"]}
    assert by_name[names[0]]["outcome"] == "ok", by_name[names[0]]
    assert by_name[names[1]]["outcome"] == "unreachable"
    assert by_name[names[1]]["error"]["kind"] == "tls-verify"


def test_an_offline_device_is_unreachable_and_the_others_finish(
    sim: Any, tmp_path: Path, cli: Any
) -> None:
    names = list(sim.devices)
    sim.set_fault(names[1], offline=True)
    result = cli("status", "-i", str(ws_inventory(sim, tmp_path)), "-o", "json")
    assert result.exit_code == 1
    by_name = {d["device"]: d for d in result.json()["devices"]}
    assert by_name[names[1]]["outcome"] == "unreachable"
    assert all(by_name[n]["outcome"] == "ok" for n in names if n != names[1])


def _device(sim: Any, tmp_path: Path, name: str) -> Device:
    return load_inventory(ws_inventory(sim, tmp_path, name="one.yaml")).devices[name]


async def test_a_reboot_mid_connection_reconnects(sim: Any, tmp_path: Path) -> None:
    name = next(iter(sim.devices))
    device = _device(sim, tmp_path, name)
    calls: list[Exchange] = []
    transport = WebSocketTransport(
        device, Secret(sim.password), ssl_context=ssl_context_for(device.verify),
        timeouts=Timeouts(connect=5.0, read=30.0),
        retry=RetryPolicy(attempts=10, base=0.25, cap=2.0), recorder=calls.append,
    )
    async with transport:
        xapi = Xapi(transport)
        before = await xapi.ca_show()
        await asyncio.get_running_loop().run_in_executor(None, sim.reboot, name)
        after = await xapi.ca_show()  # idempotent: reconnects on the dead socket
        unit = await xapi.system_unit()
    assert [c.fingerprint for c in after] == [c.fingerprint for c in before]
    assert unit.product.startswith("Cisco")
    paths = [c.path for c in calls if c.kind == "session"]
    assert paths[0] == "ws" and paths[-1] == "ws/close"
    assert "ws/reconnect" in paths
    assert all(c.ok for c in calls if c.kind != "session" or c.path != "ws/close")
