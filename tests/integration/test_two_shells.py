"""The issue's acceptance story, as a user runs it: `certfleet sim serve --devices 50` in one
process, `certfleet -i FILE ...` in others, nothing shared but the inventory file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from certfleet.fleet.pki.certs import fingerprint
from certfleet.fleet.pki.local_ca import create_ca

pytestmark = pytest.mark.slow

CERTFLEET = [sys.executable, "-m", "certfleet.cli.main"]


@pytest.fixture
def served_fleet(tmp_path: Path) -> Iterator[Path]:
    inventory = tmp_path / "fleet.yaml"
    proc = subprocess.Popen(
        [*CERTFLEET, "sim", "serve", "--devices", "50", "--state", str(tmp_path / "state"),
         "--inventory-out", str(inventory)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "ready", (line, proc.stderr.read() if proc.poll() is not None else "")
        yield inventory
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        assert code == 0, proc.stderr.read() if proc.stderr else code


def certfleet(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTFLEET_")}
    env["CERTFLEET_JOURNAL"] = os.environ["CERTFLEET_JOURNAL"]  # the test's own (conftest)
    return subprocess.run([*CERTFLEET, *args], capture_output=True, text=True, env=env,
                          timeout=300, check=False)


def test_fifty_devices_from_another_shell(served_fleet: Path, tmp_path: Path) -> None:
    ca = create_ca("Acceptance Root CA", organization="Example")
    ca_file = tmp_path / "root.pem"
    ca_file.write_text(ca.cert_pem)
    sha1 = fingerprint(ca.cert)
    inv = str(served_fleet)

    status = certfleet("-i", inv, "status")
    assert status.returncode == 0, status.stderr

    first = certfleet("-i", inv, "push-ca", str(ca_file), "-o", "json")
    assert first.returncode == 0, first.stderr
    doc = json.loads(first.stdout)
    assert doc["summary"]["changed"] == 50

    second = certfleet("-i", inv, "push-ca", str(ca_file), "-o", "json")
    assert second.returncode == 0, second.stderr
    doc2 = json.loads(second.stdout)
    assert doc2["summary"]["ok"] == 50
    writes = [c for d in doc2["devices"] for c in d["calls"]
              if c["path"] in ("Security/Certificates/CA/Add", "Security/Certificates/CA/Delete")]
    assert writes == []

    listed = certfleet("-i", inv, "status", "--output", "json")
    assert listed.returncode == 0, listed.stderr
    devices = json.loads(listed.stdout)["devices"]
    assert len(devices) == 50
    for entry in devices:
        assert sha1 in [c["fingerprint"] for c in entry["facts"]["cas"]]
