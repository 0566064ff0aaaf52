"""The library front door (issue 16 item 1): ``fleet.run`` runs push-ca and rotate against
roomsim with no Typer, no rich and no ``cli`` module imported — the README's "Use it as a
library" example, run exactly as written in a fresh interpreter — and ``fleet.resume`` takes up
a rotation from the journal alone."""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509

ROOT = Path(__file__).resolve().parents[2]
JOURNAL_PASS = "journal-passphrase-for-library-41"

#: runs the README's block, then reports what it did and which modules it loaded
_WRAPPER = """
import json, sys
if __name__ == "__main__":
    scope = {"__name__": "readme_example"}
    exec(compile(open(sys.argv[1]).read(), "README example", "exec"), scope)
    result = scope["main"]()
    loaded = sorted(m for m in sys.modules
                    if m.split(".")[0] in ("typer", "click", "rich")
                    or m.split(".")[:2] == ["certfleet", "cli"])
    print("REPORT " + json.dumps({"outcome": [d.outcome.value for d in result.devices],
                                  "loaded": loaded}))
"""


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    found = re.findall(r"<!-- library: front-door -->\n```python\n(.*?)```", text, re.S)
    assert len(found) == 1, "README.md has no (or several) library: front-door blocks"
    return str(found[0])


def served_issuer(port: int) -> str:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).issuer.rfc4514_string()


def lobby_inventory(sim: Any, lab: Path, folder: Path, lobby: list[str]) -> None:
    """The sim's inventory in ``folder``, trusting the sim CA and the lab CA (devices serve a
    lab-signed certificate once rotated), with ``lobby`` tagged."""
    trust = folder / "device-cas.pem"
    trust.write_text(sim.ca_pem_path.read_text() + (lab / "ca.pem").read_text())
    inv = yaml.safe_load(sim.inventory_path.read_text())
    inv["defaults"]["verify"] = f"ca:{trust}"
    inv["defaults"]["certificate"] = {"key": "ec-p256", "subject": {"O": "Example"},
                                      "san_ip": ["{host}"]}
    for name, device in inv["devices"].items():
        if name in lobby:
            device["tags"] = ["lobby"]
    (folder / "inventory.yaml").write_text(yaml.safe_dump(inv))


def test_readme_library_example_runs_push_ca_and_rotate_without_the_cli(
        sim: Any, lab: Path, corp_ca: Any, tmp_path: Path) -> None:
    folder = tmp_path / "work"
    folder.mkdir()
    lobby = sorted(sim.devices)[:3]
    lobby_inventory(sim, lab, folder, lobby)
    (folder / "corp-root.pem").write_text(corp_ca[0].cert_pem)
    (folder / "lab-ca").symlink_to(lab)
    (folder / "example.py").write_text(readme_example())
    (folder / "wrapper.py").write_text(_WRAPPER)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CERTFLEET_JOURNAL_PASSPHRASE": JOURNAL_PASS}
    done = subprocess.run([sys.executable, "wrapper.py", "example.py"], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout.split("REPORT ", 1)[1])
    assert report["loaded"] == []  # no cli, no Typer, no rich: the engine alone
    assert report["outcome"] == ["changed"] * 3, done.stdout  # rotate: every lobby device
    # push-ca's lines, as the example prints them: each lobby device got the corporate CA
    for name in lobby:
        assert f"{name} changed" in done.stdout
    for name, device in sim.devices.items():
        issuer = served_issuer(device.port)
        assert ("Lab Room CA" in issuer) == (name in lobby), (name, issuer)
    # the runs are journaled as the CLI's are: the CLI lists them
    journal = folder / "journal.sqlite"
    assert journal.exists()


def test_resume_rebuilds_the_rotation_from_the_journal(
        sim: Any, lab: Path, tmp_path: Path, monkeypatch: Any) -> None:
    """A rotation that left a device unreachable is finished by ``fleet.resume`` with nothing
    but the journal: the plan is rebuilt from what it wrote there."""
    from certfleet import fleet
    from certfleet.fleet.pki.signers.factory import SignerSpec
    from certfleet.fleet.plans import Rotate

    monkeypatch.setenv("CERTFLEET_JOURNAL_PASSPHRASE", JOURNAL_PASS)
    folder = tmp_path / "work"
    folder.mkdir()
    lobby_inventory(sim, lab, folder, [])
    journal = folder / "journal.sqlite"
    devices = fleet.load_inventory(folder / "inventory.yaml").select(None)
    down = devices[0].name
    sim.set_fault(down, offline=True)
    plan = Rotate(purposes=("HTTPS",), force=True,
                  signer=SignerSpec(kind="local-ca", ca_dir=str(lab),
                                    ca_passphrase="env:CERTFLEET_CA_PASSPHRASE"))
    config = fleet.RunConfig(journal=journal, inventory=str(folder / "inventory.yaml"),
                             journal_args={"limit": None}, signals=False)
    first = fleet.run(plan, devices, config)
    outcomes = {d.device: d.outcome.value for d in first.devices}
    assert outcomes.pop(down) == "unreachable"
    assert set(outcomes.values()) == {"changed"}

    sim.clear_faults(down)
    again = fleet.resume(journal, "last", fleet.RunConfig(signals=False))
    assert again is not None
    assert [(d.device, d.outcome.value) for d in again.devices] == [(down, "changed")]
    assert "Lab Room CA" in served_issuer(sim.devices[down].port)
    assert fleet.resume(journal, "last") is None  # every device finished now


def test_run_checks_secrets_before_anything_and_reports_events(
        sim: Any, corp_ca: Any, tmp_path: Path) -> None:
    """Bad input stops ``fleet.run`` before any device is contacted or journal is made; a
    good run reports each device as it starts and finishes, in the order it happens."""
    from certfleet import fleet
    from certfleet.fleet.errors import SecretError
    from certfleet.fleet.pki.certs import load_ca_files
    from certfleet.fleet.plans import PushCa

    inv = yaml.safe_load(sim.inventory_path.read_text())
    inv["defaults"]["password"] = "env:CERTFLEET_TEST_NO_SUCH_VARIABLE_93"
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(inv))
    journal = tmp_path / "front-door.sqlite"
    plan = PushCa(cas=load_ca_files([corp_ca[1]]))
    before = sum(device.requests_seen for device in sim.devices.values())
    try:
        fleet.run(plan, fleet.load_inventory(broken).select(None),
                  fleet.RunConfig(journal=journal, signals=False))
        raise AssertionError("a missing secret must stop the run")
    except SecretError as exc:
        assert "CERTFLEET_TEST_NO_SUCH_VARIABLE_93" in str(exc)
    assert not journal.exists()
    assert sum(device.requests_seen for device in sim.devices.values()) == before

    events: list[Any] = []
    devices = fleet.load_inventory(sim.inventory_path).select(None)
    result = fleet.run(plan, devices, fleet.RunConfig(journal=journal, dry_run=True,
                                                      parallel=2, signals=False),
                       on_event=events.append)
    assert [d.device for d in result.devices] == [d.name for d in devices]
    assert {d.outcome.value for d in result.devices} == {"changed"}  # would add the CA
    started = [e.device for e in events if isinstance(e, fleet.DeviceStarted)]
    finished = [e for e in events if isinstance(e, fleet.DeviceFinished)]
    assert sorted(started) == sorted(d.name for d in devices)
    assert [e.done for e in finished] == list(range(1, len(devices) + 1))
    assert journal.exists()
