"""push-ca and status against roomsim over real sockets with real TLS verification."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from certfleet.fleet.pki.certs import fingerprint
from certfleet.fleet.pki.local_ca import LocalCa, create_ca


def ca_fingerprints(doc: dict[str, Any], device: str) -> list[str]:
    entry = next(d for d in doc["devices"] if d["device"] == device)
    return [c["fingerprint"] for c in entry["facts"]["cas"]]


def test_push_ca_changes_then_is_idempotent(sim: Any, corp_ca: tuple[LocalCa, Path], cli: Any) -> None:
    ca, ca_file = corp_ca
    inv = str(sim.inventory_path)
    sha1 = fingerprint(ca.cert)

    first = cli("push-ca", str(ca_file), "-i", inv, "-o", "json")
    assert first.exit_code == 0, first.output
    doc = first.json()
    assert doc["schema"] == "certfleet/run/v1"
    assert doc["summary"]["changed"] == 5
    for entry in doc["devices"]:
        assert entry["outcome"] == "changed"
        assert entry["steps"] == [
            {"action": "ca.add", "target": sha1, "detail": "/O=Example Corp/CN=Example Corp Root CA",
             "applied": True}
        ]
        assert sha1 not in entry["fingerprints"]["before"]
        assert sha1 in entry["fingerprints"]["after"]
        # one session per device, closed at the end
        kinds = [c["kind"] for c in entry["calls"]]
        assert kinds[0] == "session" and kinds[-1] == "session"

    second = cli("push-ca", str(ca_file), "-i", inv, "-o", "json")
    assert second.exit_code == 0, second.output
    doc2 = second.json()
    assert doc2["summary"]["ok"] == 5
    for entry in doc2["devices"]:
        assert entry["steps"] == []
        assert all(c["path"] != "Security/Certificates/CA/Add" for c in entry["calls"])

    status = cli("status", "-i", inv, "-o", "json")
    assert status.exit_code == 0, status.output
    for name in sim.devices:
        assert sha1 in ca_fingerprints(status.json(), name)


def test_dry_run_reads_but_writes_nothing(sim: Any, corp_ca: tuple[LocalCa, Path], cli: Any) -> None:
    _, ca_file = corp_ca
    inv = str(sim.inventory_path)
    before = {n: list(d.ca_list) for n, d in sim.devices.items()}
    result = cli("push-ca", str(ca_file), "-i", inv, "--dry-run", "-o", "json")
    assert result.exit_code == 0, result.output
    doc = result.json()
    assert doc["dry_run"] is True
    for entry in doc["devices"]:
        assert entry["outcome"] == "changed"
        assert [s["applied"] for s in entry["steps"]] == [False]
        assert {c["path"] for c in entry["calls"] if c["kind"] == "command"} == {
            "Security/Certificates/CA/Show"
        }
    assert {n: list(d.ca_list) for n, d in sim.devices.items()} == before


def test_prune_removes_what_is_not_listed(sim: Any, corp_ca: tuple[LocalCa, Path], cli: Any,
                                          tmp_path: Path) -> None:
    _, ca_file = corp_ca
    other = create_ca("Old Partner CA")
    other_file = tmp_path / "old.pem"
    other_file.write_text(other.cert_pem)
    inv = str(sim.inventory_path)
    assert cli("push-ca", str(ca_file), str(other_file), "-i", inv).exit_code == 0

    refused = cli("push-ca", str(ca_file), "-i", inv, "--prune")
    assert refused.exit_code == 2
    assert "--yes" in refused.stderr

    pruned = cli("push-ca", str(ca_file), "-i", inv, "--prune", "--yes", "-o", "json")
    assert pruned.exit_code == 0, pruned.output
    old_sha1 = fingerprint(other.cert)
    for entry in pruned.json()["devices"]:
        assert old_sha1 in entry["fingerprints"]["before"]
        assert old_sha1 not in entry["fingerprints"]["after"]
        assert fingerprint(corp_ca[0].cert) in entry["fingerprints"]["after"]


def test_status_reads_identity_and_the_served_https_certificate(sim: Any, cli: Any) -> None:
    import socket
    import ssl

    result = cli("status", "-i", str(sim.inventory_path), "-o", "json")
    assert result.exit_code == 0, result.output
    doc = result.json()
    assert doc["summary"]["ok"] == 5
    for entry in doc["devices"]:
        assert entry["facts"]["system"]["product"].startswith("Cisco")
        assert entry["facts"]["system"]["serial"]
        https = [c for c in entry["facts"]["certificates"] if "HTTPS" in c["purposes"]]
        assert len(https) == 1
        device = sim.devices[entry["device"]]
        ctx = ssl.create_default_context(cafile=str(sim.ca_pem_path))
        with socket.create_connection(("127.0.0.1", device.port)) as raw, \
                ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            der = tls.getpeercert(binary_form=True)
        import hashlib

        assert der is not None
        assert https[0]["fingerprint"] == hashlib.sha1(der).hexdigest()


def test_status_table_and_expiring_within(sim: Any, cli: Any) -> None:
    inv = str(sim.inventory_path)
    table = cli("status", "-i", inv)
    assert table.exit_code == 0, table.output
    for name in sim.devices:
        assert name in table.stdout
    assert "HTTPS" in table.stdout
    # the sim's HTTPS certificates are valid for about a year: within 30d nothing, within 5y all
    assert cli("status", "-i", inv, "--expiring-within", "30d").exit_code == 0
    within = cli("status", "-i", inv, "--expiring-within", "1900d", "-o", "json")
    assert within.exit_code == 1
    doc = within.json()
    assert {e["device"] for e in doc["expiring"]} == set(sim.devices)


def test_limit_selects_and_unknown_limit_is_an_error(sim: Any, cli: Any) -> None:
    inv = str(sim.inventory_path)
    names = list(sim.devices)
    one = cli("status", "-i", inv, "--limit", names[0], "-o", "json")
    assert one.exit_code == 0
    assert [d["device"] for d in one.json()["devices"]] == [names[0]]
    excl = cli("status", "-i", inv, "--limit", f"!{names[0]}", "-o", "json")
    assert [d["device"] for d in excl.json()["devices"]] == names[1:]
    bad = cli("status", "-i", inv, "--limit", "no-such-room")
    assert bad.exit_code == 2
    assert "no-such-room" in bad.stderr
    assert bad.stdout == ""


def test_device_down_others_still_finish(sim: Any, corp_ca: tuple[LocalCa, Path], cli: Any) -> None:
    names = list(sim.devices)
    sim.set_fault(names[1], offline=True)
    result = cli("push-ca", str(corp_ca[1]), "-i", str(sim.inventory_path), "-o", "json")
    assert result.exit_code == 1
    outcomes = {d["device"]: d for d in result.json()["devices"]}
    assert outcomes[names[1]]["outcome"] == "unreachable"
    assert outcomes[names[1]]["error"]["kind"] == "unreachable"
    assert all(outcomes[n]["outcome"] == "changed" for n in names if n != names[1])


def test_garbage_and_action_error_are_specific_failures(sim: Any, corp_ca: tuple[LocalCa, Path],
                                                        cli: Any) -> None:
    names = list(sim.devices)
    sim.set_fault(names[0], garbage=True)
    sim.set_fault(names[2], action_error=True)
    result = cli("push-ca", str(corp_ca[1]), "-i", str(sim.inventory_path), "-o", "json")
    assert result.exit_code == 1
    by_name = {d["device"]: d for d in result.json()["devices"]}
    assert by_name[names[0]]["outcome"] == "failed"
    assert by_name[names[0]]["error"]["kind"] == "bad-reply"
    assert by_name[names[2]]["outcome"] == "failed"
    assert by_name[names[2]]["error"]["kind"] == "command"
    assert by_name[names[2]]["error"]["xpath"]
    assert by_name[names[3]]["outcome"] == "changed"


def test_wrong_password_fails_fast_with_one_login(sim: Any, tmp_path: Path, cli: Any) -> None:
    inv = yaml.safe_load(sim.inventory_path.read_text())
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-password\n")
    wrong.chmod(0o600)
    inv["defaults"]["password"] = f"file:{wrong}"
    path = tmp_path / "wrong.yaml"
    path.write_text(yaml.safe_dump(inv))
    name = next(iter(sim.devices))
    result = cli("status", "-i", str(path), "--limit", name, "-o", "json")
    assert result.exit_code == 1
    entry = result.json()["devices"][0]
    assert entry["outcome"] == "failed"
    assert entry["error"]["kind"] == "auth"
    logins = [c for c in entry["calls"] if c["path"] == "xmlapi/session/begin"]
    assert len(logins) == 1 and logins[0]["http_status"] == 401 and logins[0].get("attempts", 1) == 1
    assert sim.devices[name].failed_logins == 1
    assert "not-the-password" not in result.output


def test_tls_trust_is_enforced(sim: Any, tmp_path: Path, cli: Any) -> None:
    import hashlib
    import socket
    import ssl

    inv = yaml.safe_load(sim.inventory_path.read_text())
    name, device = next(iter(sim.devices.items()))
    stranger = create_ca("Not the device CA")
    stranger_file = tmp_path / "stranger.pem"
    stranger_file.write_text(stranger.cert_pem)

    def run_with(verify: str) -> dict[str, Any]:
        doc = dict(inv)
        doc["defaults"] = {**inv["defaults"], "verify": verify}
        path = tmp_path / f"inv-{hashlib.sha1(verify.encode()).hexdigest()[:6]}.yaml"
        path.write_text(yaml.safe_dump(doc))
        result = cli("status", "-i", str(path), "--limit", name, "-o", "json")
        return json.loads(result.stdout)["devices"][0]

    wrong_ca = run_with(f"ca:{stranger_file}")
    assert wrong_ca["outcome"] == "unreachable"
    assert wrong_ca["error"]["kind"] == "tls-verify"

    ctx = ssl.create_default_context(cafile=str(sim.ca_pem_path))
    with socket.create_connection(("127.0.0.1", device.port)) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    good_pin = hashlib.sha256(der).hexdigest()
    assert run_with(f"pin:sha256:{good_pin}")["outcome"] == "ok"

    bad = run_with("pin:sha256:" + "00" * 32)
    assert bad["outcome"] == "unreachable"
    assert bad["error"]["kind"] == "tls-verify"
    # the credentials never went out: no login was even attempted on the device
    assert [c["path"] for c in bad["calls"]] == ["xmlapi/session/begin"]
    assert device.failed_logins == 0
