"""What certfleet reports for each roomsim reliability fault: a specific outcome, error kind
and message per device, and the device left as it was (or finished on the next run).

truncate → failed/transport ("connection … broke"), storm_503 within the retry budget →
changed, beyond it → failed/rate-limited, hostile_xml → failed/bad-reply ("refused a hostile
XML reply … nothing was expanded"), offline_after (offline mid-run) → unreachable, and
slow_reboot → waited for within the budget, a timeout beyond it."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from test_rotate import served_certificate, sha1, trusting_inventory

ROTATE = ("rotate", "--purpose", "HTTPS", "--signer", "local-ca", "--renew-before", "400d",
          "-o", "json")


def rotate(cli: Any, inv: Path | str, lab_dir: Path, *extra: str) -> Any:
    return cli(*ROTATE[:1], "-i", str(inv), *ROTATE[1:], "--ca-dir", str(lab_dir), *extra)


def entries(result: Any) -> dict[str, dict[str, Any]]:
    return {d["device"]: d for d in result.json()["devices"]}


def https_fingerprint(sim: Any, name: str) -> str | None:
    active = sim.devices[name].store.active_for("HTTPS")
    return active.fingerprint if active is not None else None


@pytest.mark.parametrize("transport", ["local", "websocket"])
def test_truncated_reply_is_a_transport_failure(sim: Any, lab: Path, tmp_path: Path, cli: Any,
                                                transport: str) -> None:
    inv = trusting_inventory(sim, lab, tmp_path)
    data = yaml.safe_load(inv.read_text())
    data["defaults"]["transport"] = transport
    inv.write_text(yaml.safe_dump(data))
    names = list(sim.devices)
    before = https_fingerprint(sim, names[0])
    sim.set_fault(names[0], truncate=True)
    result = rotate(cli, inv, lab)
    assert result.exit_code == 1, result.output
    entry = entries(result)[names[0]]
    assert entry["outcome"] == "failed"
    assert entry["error"]["kind"] == "transport"
    port = sim.devices[names[0]].port
    if transport == "local":
        assert f"connection to 127.0.0.1:{port} broke" in entry["error"]["message"]
        # the reply was lost on a read: retried (it is safe to), then given up
        assert entry["calls"][1]["attempts"] == 4
    else:
        assert "closed the connection" in entry["error"]["message"]
    assert https_fingerprint(sim, names[0]) == before  # nothing changed
    assert all(entries(result)[n]["outcome"] == "changed" for n in names[1:])


def test_503_storm_within_the_retry_budget_completes_beyond_it_fails(
    sim: Any, lab: Path, tmp_path: Path, cli: Any
) -> None:
    inv = trusting_inventory(sim, lab, tmp_path)
    short, long_ = list(sim.devices)[:2]
    before = https_fingerprint(sim, long_)
    sim.set_fault(short, storm_503=3)  # 3 retries are allowed (4 attempts)
    sim.set_fault(long_, storm_503=50)
    result = rotate(cli, inv, lab)
    assert result.exit_code == 1
    done = entries(result)
    assert done[short]["outcome"] == "changed"
    begin = done[short]["calls"][0]
    assert begin["path"] == "xmlapi/session/begin" and begin["attempts"] == 4
    assert begin["duration_ms"] >= 2900  # Retry-After: 1 honoured each time
    assert done[long_]["outcome"] == "failed"
    assert done[long_]["error"]["kind"] == "rate-limited"
    assert "busy (HTTP 503) after retries" in done[long_]["error"]["message"]
    assert https_fingerprint(sim, long_) == before
    assert sim.devices[long_].faults.storm_503 == 46  # four tries, no more


@pytest.mark.parametrize("kind", ["laughs", "external"])
def test_hostile_xml_is_refused_not_expanded(sim: Any, lab: Path, tmp_path: Path, cli: Any,
                                             kind: str) -> None:
    inv = trusting_inventory(sim, lab, tmp_path)
    name = next(iter(sim.devices))
    before = https_fingerprint(sim, name)
    sim.set_fault(name, hostile_xml=kind)
    started = time.monotonic()
    result = rotate(cli, inv, lab, "--limit", name)
    assert time.monotonic() - started < 30
    assert result.exit_code == 1
    entry = entries(result)[name]
    assert entry["outcome"] == "failed"
    assert entry["error"]["kind"] == "bad-reply"
    message = entry["error"]["message"]
    assert "refused a hostile XML reply" in message and "nothing was expanded" in message
    # the first read of the run (the device's release) gets the hostile reply
    assert entry["error"]["xpath"] == "Status/SystemUnit"
    assert "lol" not in result.output and "root:" not in result.output
    assert https_fingerprint(sim, name) == before


def test_device_going_offline_mid_run_is_unreachable_then_finished(
    sim: Any, lab: Path, tmp_path: Path, cli: Any, _journal_in_tmp: Path
) -> None:
    inv = trusting_inventory(sim, lab, tmp_path)
    early, after_add, after_activate = list(sim.devices)[:3]
    old = {n: https_fingerprint(sim, n) for n in sim.devices}
    # requests: 1 session begin, 2 Status SystemUnit (the release), 3 Services Show,
    # 4 Profiles List, 5 Services Add, 6 Services Activate, ...
    sim.set_fault(early, offline_after=3)
    sim.set_fault(after_add, offline_after=5)
    sim.set_fault(after_activate, offline_after=6)
    result = rotate(cli, inv, lab)
    assert result.exit_code == 1
    done = entries(result)
    for name in (early, after_add, after_activate):
        assert done[name]["outcome"] == "unreachable", done[name]
        assert done[name]["error"]["kind"] == "unreachable"
        port = sim.devices[name].port
        assert f"127.0.0.1:{port}" in done[name]["error"]["message"]
        assert sim.devices[name].faults.offline
    for name in (after_add, after_activate):
        message = done[name]["error"]["message"]
        # the rollback could not reach the device either, and the report says so (it used
        # to claim "nothing was active before")
        assert "not rolled back; ROLLBACK INCOMPLETE" in message, message
        assert "nothing was active before" not in message
    # make-before-break held: the device kept its old certificate, or has the new one active
    assert https_fingerprint(sim, early) == old[early]
    assert https_fingerprint(sim, after_add) == old[after_add]
    assert https_fingerprint(sim, after_activate) != old[after_activate]
    assert old[after_activate] in {c.fingerprint for c in sim.devices[after_activate].services}

    sim.clear_faults()
    again = cli(*ROTATE[:1], "-i", str(inv), *ROTATE[1:], "--ca-dir", str(lab), "--limit",
                "@failed")
    assert again.exit_code == 0, again.output
    redone = entries(again)
    assert set(redone) == {early, after_add, after_activate}
    assert all(d["outcome"] == "changed" for d in redone.values())
    first_run = result.json()["run_id"]
    for name in (after_add, after_activate):  # the key from the first run, not a new one
        assert redone[name]["steps"][0]["detail"].startswith(
            f"finishing the rotation begun in run {first_run}")
    with sqlite3.connect(_journal_in_tmp) as db:
        keys = db.execute("SELECT device, public_sha256, state FROM keys").fetchall()
        reused = {d for (d,) in db.execute("SELECT device FROM steps WHERE run_id = ? AND "
                                           "step = 'key reused'", (again.json()["run_id"],))}
    assert reused == {after_add, after_activate}
    per_device: dict[str, list[tuple[str, str]]] = {}
    for device, public, state in keys:
        per_device.setdefault(device, []).append((public, state))
    for name in sim.devices:
        assert len(per_device[name]) == 1, per_device[name]  # one key each, never two
        served = served_certificate(sim, name)
        spki = served.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        assert per_device[name] == [(hashlib.sha256(spki).hexdigest(), "done")]
        assert sha1(served) == https_fingerprint(sim, name)
        # and the certificate it replaced is gone, also where the first run had already put
        # the new one in use before the device went away
        assert old[name] not in {c.fingerprint for c in sim.devices[name].services}, name


@pytest.mark.slow
def test_slow_reboot_is_waited_for_within_the_budget(tmp_path: Path, scep_server: Any, cli: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from test_enroll import enroll_args, enroll_inventory

    from certfleet.roomsim import SimFleetThread

    monkeypatch.setenv("TEST_SCEP_CHALLENGE", scep_server.challenge)
    with SimFleetThread(tmp_path / "reboot-sim", devices=2, reboot_seconds=0.5) as sim:
        slow, stuck = list(sim.devices)
        sim.set_fault(slow, slow_reboot=3.0)
        sim.set_fault(stuck, slow_reboot=120.0)
        inv = enroll_inventory(sim, tmp_path)
        result = cli(*enroll_args(scep_server, inv, "--reboot", "--device-timeout", "12"))
        assert result.exit_code == 1, result.output
        done = entries(result)
        assert done[slow]["outcome"] == "changed"
        assert done[slow]["duration_ms"] >= 3000
        assert "back after reboot" not in str(done[stuck]["steps"])
        assert done[stuck]["outcome"] == "failed"
        assert done[stuck]["error"]["kind"] == "timeout"
        assert "did not finish within 12s" in done[stuck]["error"]["message"]
