"""rotate and push-cert against roomsim: make-before-break, the served HTTPS certificate,
a device that rejects the certificate, and a run killed with SIGKILL then resumed."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

CA_PASS = "ca-passphrase-for-tests-81"
JOURNAL_PASS = "journal-passphrase-for-tests-27"


def served_certificate(sim: Any, name: str) -> x509.Certificate:
    device = sim.devices[name]
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", device.port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def sha1(cert: x509.Certificate) -> str:
    return hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def trusting_inventory(sim: Any, ca_dir: Path, tmp_path: Path, *, trust_lab: bool = True) -> Path:
    """The sim's inventory, verifying devices against the sim CA *and* the lab CA, so
    certfleet still trusts a device after its HTTPS certificate is rotated."""
    both = tmp_path / "device-cas.pem"
    lab_ca = (ca_dir / "ca.pem").read_text() if trust_lab else ""
    both.write_text(sim.ca_pem_path.read_text() + lab_ca)
    inv = yaml.safe_load(sim.inventory_path.read_text())
    inv["defaults"]["verify"] = f"ca:{both}"
    inv["defaults"]["certificate"] = {"key": "ec-p256", "subject": {"O": "Example"},
                                      "san_ip": ["{host}"], "san_dns": ["{name}.rooms.example"]}
    path = tmp_path / "rotate.yaml"
    path.write_text(yaml.safe_dump(inv))
    return path


def test_rotate_https_make_before_break(sim: Any, lab: Path, tmp_path: Path, cli: Any) -> None:
    inv = str(trusting_inventory(sim, lab, tmp_path))
    old = {name: sha1(served_certificate(sim, name)) for name in sim.devices}

    first = cli("rotate", "-i", inv, "--purpose", "HTTPS", "--signer", "local-ca",
                "--ca-dir", str(lab), "--renew-before", "400d", "-o", "json")
    assert first.exit_code == 0, first.output
    doc = first.json()
    assert doc["summary"]["changed"] == len(sim.devices)
    for entry in doc["devices"]:
        name = entry["device"]
        served = served_certificate(sim, name)
        assert sha1(served) == entry["fingerprints"]["after"][0]
        assert entry["fingerprints"]["before"] == [old[name]]
        assert served.issuer.rfc4514_string() == "CN=Lab Room CA"
        # the old certificate is gone from the device
        assert old[name] not in {c.fingerprint for c in sim.devices[name].services}
        # the list is read before the change and once to verify it; the clean-up decides
        # from that verifying read (nothing was sent to the device in between)
        shows = [c for c in entry["calls"] if c["path"].endswith("Services/Show")]
        assert len(shows) == 2, entry["calls"]

    second = cli("rotate", "-i", inv, "--purpose", "HTTPS", "--signer", "local-ca",
                 "--ca-dir", str(lab), "--renew-before", "30d", "-o", "json")
    assert second.exit_code == 0, second.output
    assert second.json()["summary"]["ok"] == len(sim.devices)

    status = cli("status", "-i", inv, "-o", "json")
    for entry in status.json()["devices"]:
        https = [c for c in entry["facts"]["certificates"] if "HTTPS" in c["purposes"]]
        assert https[0]["issuer"] == "/CN=Lab Room CA"

    everything = first.output + second.output + status.output
    for secret in (CA_PASS, JOURNAL_PASS, sim.password, "PRIVATE KEY"):
        assert secret not in everything


def test_device_rejecting_the_certificate_keeps_its_old_one(
    sim: Any, lab: Path, tmp_path: Path, cli: Any
) -> None:
    inv = str(trusting_inventory(sim, lab, tmp_path))
    name = list(sim.devices)[2]
    before = sha1(served_certificate(sim, name))
    sim.set_fault(name, reject_certificates=True)
    result = cli("rotate", "-i", inv, "--purpose", "HTTPS", "--signer", "local-ca",
                 "--ca-dir", str(lab), "--force", "-o", "json")
    assert result.exit_code == 1
    entry = next(d for d in result.json()["devices"] if d["device"] == name)
    assert entry["outcome"] == "failed"
    assert "rejected by device policy" in entry["error"]["message"]
    assert entry["error"]["xpath"] == "Security/Certificates/Services/Add"
    assert sha1(served_certificate(sim, name)) == before
    others = [d for d in result.json()["devices"] if d["device"] != name]
    assert all(d["outcome"] == "changed" for d in others)


def test_rotate_refuses_when_certfleet_would_lose_trust(
    sim: Any, lab: Path, cli: Any, tmp_path: Path
) -> None:
    # an inventory that trusts only the sim CA: rotating HTTPS to the lab CA would lock
    # certfleet out, so it must refuse before touching anything
    inv = trusting_inventory(sim, lab, tmp_path, trust_lab=False)
    name = next(iter(sim.devices))
    before = sha1(served_certificate(sim, name))
    result = cli("rotate", "-i", str(inv), "--purpose", "HTTPS", "--signer",
                 "local-ca", "--ca-dir", str(lab), "--force", "--limit", name, "-o", "json")
    assert result.exit_code == 1
    entry = result.json()["devices"][0]
    assert entry["error"]["kind"] == "certificate-check"
    assert "add that CA" in entry["error"]["message"]
    assert sha1(served_certificate(sim, name)) == before


def test_push_cert_from_files(sim: Any, lab: Path, tmp_path: Path, cli: Any) -> None:
    inv = str(trusting_inventory(sim, lab, tmp_path))
    out = tmp_path / "csrs"
    made = cli("csr", "-i", inv, "--out", str(out))
    assert made.exit_code == 0, made.output
    for name in sim.devices:
        signed = cli("ca", "sign", str(out / f"{name}.csr.pem"), "--dir", str(lab),
                     "--passphrase", "env:CERTFLEET_CA_PASSPHRASE",
                     "--out", str(out / f"{name}.pem"))
        assert signed.exit_code == 0, signed.output
        assert (os.stat(out / f"{name}.key.pem").st_mode & 0o077) == 0
    result = cli("push-cert", "-i", inv, "--purpose", "HTTPS", "--dir", str(out), "-o", "json")
    assert result.exit_code == 0, result.output
    for entry in result.json()["devices"]:
        leaf = x509.load_pem_x509_certificate((out / f"{entry['device']}.pem").read_bytes())
        assert sha1(served_certificate(sim, entry["device"])) == sha1(leaf)
    again = cli("push-cert", "-i", inv, "--purpose", "HTTPS", "--dir", str(out), "-o", "json")
    assert again.json()["summary"]["ok"] == len(sim.devices)


# ------------------------------------------------------------------- kill and resume


@pytest.fixture
def slow_sim(tmp_path: Path) -> Iterator[Any]:
    from certfleet.roomsim import SimFleetThread

    with SimFleetThread(tmp_path / "slow-sim", devices=8, request_delay=0.15) as fleet:
        yield fleet


@pytest.mark.slow
def test_sigkill_mid_rotation_then_resume(slow_sim: Any, lab: Path, tmp_path: Path,
                                          cli: Any) -> None:
    sim = slow_sim
    inv = str(trusting_inventory(sim, lab, tmp_path))
    journal = Path(os.environ["CERTFLEET_JOURNAL"])
    env = {**os.environ}
    proc = subprocess.Popen(
        [sys.executable, "-m", "certfleet.cli.main", "rotate", "-i", inv, "--purpose", "HTTPS",
         "--signer", "local-ca", "--ca-dir", str(lab), "--force", "--parallel", "2",
         "-o", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )
    deadline = time.monotonic() + 60
    keys_before_kill: dict[str, int] = {}
    while time.monotonic() < deadline:
        time.sleep(0.1)
        if not journal.exists():
            continue
        try:
            with sqlite3.connect(journal) as db:
                rows = db.execute("SELECT device, state FROM keys").fetchall()
        except sqlite3.OperationalError:  # the file is there, its tables not yet
            continue
        done = [d for d, s in rows if s == "done"]
        if len(rows) >= 3 and len(done) >= 1 and len(done) < len(rows):
            keys_before_kill = {d: 1 for d, _ in rows}
            break
    assert keys_before_kill, "the rotation never got going"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)

    with sqlite3.connect(journal) as db:
        (status,) = db.execute("SELECT status FROM runs ORDER BY started DESC LIMIT 1").fetchone()
    assert status == "running"  # visibly unfinished

    resumed = cli("runs", "resume", "last", "-o", "json")
    assert resumed.exit_code == 0, resumed.output

    with sqlite3.connect(journal) as db:
        keys = db.execute("SELECT device, state, public_sha256 FROM keys").fetchall()
    per_device: dict[str, list[tuple[str, str]]] = {}
    for device, state, public in keys:
        per_device.setdefault(device, []).append((state, public))
    # no device whose key existed before the kill got a second key, and every key is done
    for device in keys_before_kill:
        assert len(per_device[device]) == 1, per_device[device]
    assert set(per_device) == set(sim.devices)
    assert all(state == "done" for rows in per_device.values() for state, _ in rows)
    # every device serves a certificate whose key is in the journal: nothing was lost
    for name in sim.devices:
        served = served_certificate(sim, name)
        spki = served.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        assert (("done", hashlib.sha256(spki).hexdigest()) in per_device[name])
    listed = cli("runs", "list", "-o", "json")
    assert listed.exit_code == 0
    runs = listed.json()["runs"]
    assert runs[0]["resumed_from"] == runs[1]["run_id"]


def test_rotate_with_the_files_signer_in_two_runs(sim: Any, lab: Path, tmp_path: Path,
                                                  cli: Any) -> None:
    inv = str(trusting_inventory(sim, lab, tmp_path))
    outbox, inbox = tmp_path / "outbox", tmp_path / "inbox"
    args = ["rotate", "-i", inv, "--purpose", "HTTPS", "--signer", "files", "--outbox",
            str(outbox), "--inbox", str(inbox), "--force", "-o", "json"]
    first = cli(*args)
    assert first.exit_code == 0, first.output
    assert first.json()["summary"]["skipped"] == len(sim.devices)
    inbox.mkdir()
    for name in sim.devices:
        signed = cli("ca", "sign", str(outbox / f"{name}.csr.pem"), "--dir", str(lab),
                     "--passphrase", "env:CERTFLEET_CA_PASSPHRASE", "--out",
                     str(inbox / f"{name}.pem"))
        assert signed.exit_code == 0, signed.output
    # the second run picks the certificates up with the keys from the first (no --force:
    # the open keys in the journal make the devices due)
    second = cli(*[a for a in args if a != "--force"])
    assert second.exit_code == 0, second.output
    assert second.json()["summary"]["changed"] == len(sim.devices)
    for name in sim.devices:
        leaf = x509.load_pem_x509_certificate((inbox / f"{name}.pem").read_bytes())
        assert sha1(served_certificate(sim, name)) == sha1(leaf)


SIGN_SCRIPT = """
import os, sys
from pathlib import Path
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from certfleet.fleet.pki.local_ca import load_local_ca
from certfleet.fleet.secrets import Secret
csr = x509.load_pem_x509_csr(sys.stdin.buffer.read())
ca = load_local_ca(Path(sys.argv[1]), Secret(os.environ["CERTFLEET_CA_PASSPHRASE"]))
assert os.environ["CERTFLEET_DEVICE"]
cert = ca.sign_csr(csr, days=90, purposes=("HTTPS",))
sys.stdout.write(cert.public_bytes(serialization.Encoding.PEM).decode())
sys.stdout.write(ca.cert_pem)
"""


def test_rotate_with_an_external_command(sim: Any, lab: Path, tmp_path: Path, cli: Any) -> None:
    inv = str(trusting_inventory(sim, lab, tmp_path))
    script = tmp_path / "sign.py"
    script.write_text(SIGN_SCRIPT)
    result = cli("rotate", "-i", inv, "--purpose", "HTTPS", "--signer", "command",
                 "--sign-command", f"{sys.executable} {script} {lab}", "--force", "-o", "json")
    assert result.exit_code == 0, result.output
    assert result.json()["summary"]["changed"] == len(sim.devices)
    for name in sim.devices:
        served = served_certificate(sim, name)
        assert served.issuer.rfc4514_string() == "CN=Lab Room CA"
        days = (served.not_valid_after_utc - served.not_valid_before_utc).days
        assert 89 <= days <= 90


@pytest.fixture
def fleet_of_50(tmp_path: Path) -> Iterator[Any]:
    from certfleet.roomsim import SimFleetThread

    with SimFleetThread(tmp_path / "sim50", devices=50) as fleet:
        yield fleet


@pytest.mark.slow
def test_rotate_fifty_devices(fleet_of_50: Any, lab: Path, tmp_path: Path, cli: Any) -> None:
    sim = fleet_of_50
    inv = str(trusting_inventory(sim, lab, tmp_path))
    old = {name: sha1(served_certificate(sim, name)) for name in sim.devices}
    args = ["rotate", "-i", inv, "--purpose", "HTTPS", "--signer", "local-ca", "--ca-dir",
            str(lab), "-o", "json"]
    first = cli(*args, "--renew-before", "400d")
    assert first.exit_code == 0, first.output
    assert first.json()["summary"]["changed"] == 50
    for entry in first.json()["devices"]:
        name = entry["device"]
        assert sha1(served_certificate(sim, name)) == entry["fingerprints"]["after"][0]
        assert old[name] not in {c.fingerprint for c in sim.devices[name].services}
    second = cli(*args, "--renew-before", "30d")
    assert second.exit_code == 0
    assert second.json()["summary"]["ok"] == 50
