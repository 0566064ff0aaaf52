"""The soak test of issue 7: `certfleet rotate --purpose HTTPS` across 300 simulated devices,
10% of them faulty (a seeded pick, every fault roomsim has that a rotation can meet), then
`--limit @failed` once the faults are cleared, then a plain run with nothing left to do.

The default run does it on 40 devices, 40% of them faulty (each fault of the mix once); the
full size (300 devices, 10%) is marked `long` and run by `.ci/run` (`pytest -m long`).

What it proves, checked against the journal and the simulated devices' own state (not only
against what certfleet says):

* every device ends `changed` or `failed`/`unreachable` with an error kind and message, and
  the kind is the one its fault calls for (healthy devices, and faults within the retry
  budget, end `changed`);
* no device is ever left without a certificate active for a purpose it had, and every
  device's active HTTPS certificate is either its old one or one whose key is in the journal;
  a device whose time budget runs out between activating the new certificate and verifying
  it is rolled back to its old one;
* no key is lost or made twice: every certificate certfleet installed has its key in the
  journal, and each device has exactly one key across the three runs (the failed ones are
  finished with the key the first run made);
* after the faults are cleared `--limit @failed` converges (exactly the failed devices, all
  `changed`), and a third run finds all 300 `ok`, each serving the journal's certificate.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from test_rotate import served_certificate, sha1, trusting_inventory

SEED = 2026
PARALLEL = 100


def mix(slow: float, device_timeout: int) -> list[tuple[dict[str, Any], str, str | None, str]]:
    """(fault, expected outcome, expected error kind, a piece of the expected message), dealt
    round-robin over the faulty devices (at 300 x 10%, 30 devices: the last two kinds get one
    device each; at 40 x 40%, 16 devices: one each); `slow` seconds a request for the device
    whose time budget (`device_timeout`) runs out in the middle of the change."""
    # a rotation is 10 requests (session begin, the release, Services Show, Profiles List, Add,
    # Activate, the verifying Show, ...): at `slow` seconds each the time budget runs out during
    # the verification, after the activation
    assert 6 * slow < device_timeout < 7 * slow
    return [
        ({"latency": 0.4}, "changed", None, ""),
        ({"storm_503": 2}, "changed", None, ""),  # within the retry budget (4 attempts)
        ({"storm_503": 100}, "failed", "rate-limited", "HTTP 503"),
        ({"drop": True}, "failed", "transport", "broke"),
        ({"truncate": True}, "failed", "transport", "broke"),
        ({"garbage": True}, "failed", "bad-reply", "is not XML"),
        ({"http_status": 500}, "failed", "bad-reply", "HTTP 500"),
        ({"action_error": True}, "failed", "command", "device refused the document"),
        ({"reject_certificates": True}, "failed", "command", "rejected by device policy"),
        ({"offline": True}, "unreachable", "unreachable", "cannot connect"),
        # offline mid-run: after the first read, after the upload, after the activation (the
        # next call is a safe-to-retry one each time, so the refusal is what is reported;
        # request 2 is the run's one read of the device's release, Status SystemUnit)
        ({"offline_after": 3}, "unreachable", "unreachable", "cannot connect"),
        ({"offline_after": 5}, "unreachable", "unreachable", "cannot connect"),
        ({"offline_after": 6}, "unreachable", "unreachable", "cannot connect"),
        # so slow that the device's time budget runs out in the middle of the change (after
        # the activation, before the verification — it is rolled back)
        ({"latency": slow}, "failed", "timeout", f"did not finish within {device_timeout}s"),
        ({"hostile_xml": "laughs"}, "failed", "bad-reply", "refused a hostile XML reply"),
        ({"hostile_xml": "external"}, "failed", "bad-reply", "refused a hostile XML reply"),
    ]


@dataclass(frozen=True)
class Scale:
    devices: int
    faulty_percent: int
    slow: float  # seconds a request for the device that runs out of time mid-change
    device_timeout: int


@pytest.fixture(params=[
    pytest.param(Scale(40, 40, 3.0, 20), id="40-devices"),
    pytest.param(Scale(300, 10, 4.5, 30), id="300-devices", marks=pytest.mark.long),
])
def scale(request: pytest.FixtureRequest) -> Scale:
    scale: Scale = request.param
    # every kind of fault is met
    assert scale.devices * scale.faulty_percent // 100 >= len(mix(scale.slow,
                                                                  scale.device_timeout))
    return scale


@pytest.fixture
def soak_sim(tmp_path: Path, scale: Scale) -> Iterator[Any]:
    from certfleet.roomsim import SimFleetThread

    with SimFleetThread(tmp_path / "soak-sim", devices=scale.devices) as fleet:
        yield fleet


def certfleet(*args: str) -> tuple[int, dict[str, Any], str]:
    """certfleet in its own process (as CI runs it), so client and simulator each get a core."""
    done = subprocess.run([sys.executable, "-m", "certfleet.cli.main", *args], capture_output=True,
                          text=True, env=dict(os.environ), timeout=600)
    return done.returncode, json.loads(done.stdout), done.stderr


def spki_sha256(cert: x509.Certificate) -> str:
    der = cert.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def journal_keys(journal: Path) -> dict[str, list[tuple[str, str]]]:
    """device → [(public key SHA-256, state)] from the journal's keys table."""
    with sqlite3.connect(journal) as db:
        rows = db.execute("SELECT device, public_sha256, state FROM keys ORDER BY id").fetchall()
    keys: dict[str, list[tuple[str, str]]] = {}
    for device, public, state in rows:
        keys.setdefault(device, []).append((public, state))
    return keys


def device_state(sim: Any) -> dict[str, dict[str, Any]]:
    """Per device, read on the simulator's own loop: purposes in use, the active HTTPS
    certificate, and every certificate on it with its key's SHA-256 and issuer."""

    async def read() -> dict[str, dict[str, Any]]:
        state: dict[str, dict[str, Any]] = {}
        for name, device in sim.devices.items():
            https = device.store.active_for("HTTPS")
            state[name] = {
                "purposes": {p for s in device.services for p in s.purposes},
                "in_use": {s.fingerprint for s in device.services if s.purposes},
                "https": https.fingerprint if https is not None else None,
                "https_key": spki_sha256(https.cert) if https is not None else None,
                "certs": {s.fingerprint: (spki_sha256(s.cert), s.cert.issuer.rfc4514_string())
                          for s in device.services},
            }
        return state

    result: dict[str, dict[str, Any]] = sim.run(read())
    return result


def check_devices(sim: Any, before: dict[str, dict[str, Any]], journal: Path) -> None:
    """The safety invariants, against the devices' own state and the journal."""
    keys = journal_keys(journal)
    now = device_state(sim)
    for name, was in before.items():
        state = now[name]
        # never left without a certificate for a purpose it had
        assert was["purposes"] <= state["purposes"], (name, was["purposes"], state["purposes"])
        # the HTTPS certificate in use is the old one or one whose key the journal holds
        journaled = {public for public, _ in keys.get(name, [])}
        assert state["https"] == was["https"] or state["https_key"] in journaled, name
        # every certificate certfleet installed has its key in the journal
        for fp, (public, issuer) in state["certs"].items():
            if issuer == "CN=Lab Room CA":
                assert public in journaled, (name, fp)


@pytest.mark.slow
def test_soak_rotation_with_faulty_devices(soak_sim: Any, scale: Scale, lab: Path,
                                           tmp_path: Path, _journal_in_tmp: Path) -> None:
    sim = soak_sim
    devices, faulty_percent, slow = scale.devices, scale.faulty_percent, scale.slow
    faults = mix(slow, scale.device_timeout)
    started = time.monotonic()
    journal = _journal_in_tmp
    inv = str(trusting_inventory(sim, lab, tmp_path))
    faulty = sim.pick_fraction(faulty_percent, seed=SEED)
    assert len(faulty) == devices * faulty_percent // 100
    expected: dict[str, tuple[str, str | None, str]] = {}
    injected: dict[str, dict[str, Any]] = {}
    for index, name in enumerate(faulty):
        fault, outcome, kind, words = faults[index % len(faults)]
        injected[name] = fault
        expected[name] = (outcome, kind, words)
    sim.apply_faults(injected)
    before = device_state(sim)
    assert all(s["purposes"] == {"HTTPS"} and s["https"] for s in before.values())
    rotate = ["rotate", "-i", inv, "--purpose", "HTTPS", "--signer", "local-ca", "--ca-dir",
              str(lab), "--renew-before", "400d", "--parallel", str(PARALLEL),
              "--device-timeout", str(scale.device_timeout), "-o", "json"]

    # 1. the run that meets the faults
    code, first, stderr = certfleet(*rotate)
    first_took = time.monotonic() - started
    assert code == 1, stderr
    assert len(first["devices"]) == devices
    failed = set()
    for entry in first["devices"]:
        name = entry["device"]
        outcome, kind, words = expected.get(name, ("changed", None, ""))
        context = (name, injected.get(name), entry["outcome"], entry["error"])
        assert entry["outcome"] == outcome, context
        if outcome in ("failed", "unreachable"):
            failed.add(name)
            assert entry["error"]["kind"] == kind, context
            assert words in entry["error"]["message"], context
        else:
            assert entry["error"] is None, context
    assert first["summary"]["changed"] == devices - len(failed)
    check_devices(sim, before, journal)
    # the devices whose time ran out mid-change were rolled back to their old certificate
    after_first = device_state(sim)
    by_name = {e["device"]: e for e in first["devices"]}
    for name in (n for n, f in injected.items() if f == {"latency": slow}):
        assert after_first[name]["https"] == before[name]["https"], name
        assert by_name[name]["message"].startswith(
            "cut off before the new certificate was verified; rolled back: re-activated"), \
            by_name[name]

    # 2. faults cleared: the devices that failed, and only they, are finished
    sim.clear_faults()
    code, second, stderr = certfleet(*rotate, "--limit", "@failed")
    assert code == 0, stderr
    assert {e["device"] for e in second["devices"]} == failed
    assert all(e["outcome"] == "changed" for e in second["devices"]), [
        (e["device"], e["error"]) for e in second["devices"] if e["outcome"] != "changed"]
    check_devices(sim, before, journal)

    # 3. a plain run: nothing left to do anywhere
    plain = [a for a in rotate if a not in ("--renew-before", "400d")]
    code, third, stderr = certfleet(*plain)
    assert code == 0, stderr
    assert third["summary"]["ok"] == devices, third["summary"]

    # one key per device, done, and it is the key of the certificate each device serves
    keys = journal_keys(journal)
    assert set(keys) == set(sim.devices)
    final = device_state(sim)
    for name, rows in keys.items():
        assert len(rows) == 1, (name, rows)  # never a second key for a device
        ((public, state),) = rows
        assert state == "done", name
        assert final[name]["https_key"] == public, name
        assert final[name]["https"] != before[name]["https"], name
        # and the device really serves it (a fresh TLS handshake)
        assert sha1(served_certificate(sim, name)) == final[name]["https"], name
        # the old certificate is out of use everywhere
        assert before[name]["https"] not in final[name]["in_use"], name
    # and deleted, also where the device went away right after activating the new one (the
    # run that finished it found the old one's fingerprint in the journal)
    lingering = {n for n in sim.devices if before[n]["https"] in final[n]["certs"]}
    assert not lingering
    took = time.monotonic() - started
    print(f"soak: {devices} devices, {len(faulty)} faulty, {len(failed)} failed or unreachable "
          f"in the first run ({first_took:.1f}s); all three runs {took:.1f}s")
    assert took < 300, f"the soak took {took:.0f}s"
