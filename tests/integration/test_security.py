"""What certfleet promises about secrets and hostile input, checked end to end."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.x509.oid import NameOID

CA_PASS = "ca-pass-security-test-913"
JOURNAL_PASS = "journal-pass-security-test-271"


def test_journal_and_key_files_hold_no_secret_in_clear(sim: Any, tmp_path: Path, cli: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CERTFLEET_CA_PASSPHRASE", CA_PASS)
    monkeypatch.setenv("CERTFLEET_JOURNAL_PASSPHRASE", JOURNAL_PASS)
    lab = tmp_path / "lab"
    assert cli("ca", "init", "--dir", str(lab), "--cn", "Lab CA").exit_code == 0
    inv = str(sim.inventory_path)
    outputs = [cli("rotate", "-i", inv, "--purpose", "802.1X", "--signer", "local-ca",
                   "--ca-dir", str(lab), "-o", "json"),
               cli("runs", "show", "last", "-o", "json"),
               cli("runs", "show", "last")]
    assert outputs[0].exit_code == 0, outputs[0].output
    journal = Path(os.environ["CERTFLEET_JOURNAL"])
    blobs = [journal.read_bytes()]
    for extra in (journal.with_name(journal.name + "-wal"),):
        if extra.exists():
            blobs.append(extra.read_bytes())
    raw = b"".join(blobs)
    for secret in (CA_PASS, JOURNAL_PASS, sim.password):
        assert secret.encode() not in raw
        for result in outputs:
            assert secret not in result.output
    # keys are in the journal, but only encrypted
    assert b"BEGIN ENCRYPTED PRIVATE KEY" in raw
    assert b"BEGIN PRIVATE KEY" not in raw and b"BEGIN EC PRIVATE KEY" not in raw
    assert (os.stat(journal).st_mode & 0o077) == 0
    assert (os.stat(lab / "ca.key").st_mode & 0o077) == 0
    for result in outputs:
        assert "PRIVATE KEY" not in result.output


def test_hostile_certificate_fields_cannot_change_the_xml(sim: Any, scep_server: Any,
                                                          tmp_path: Path, cli: Any,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # An organisation name full of XML syntax travels as data: the device receives exactly it.
    hostile = 'A&B <Rooms> "x" \'y\' </CommonName><Injected/>'
    monkeypatch.setenv("TEST_SCEP_CHALLENGE", scep_server.challenge)
    inv = yaml.safe_load(sim.inventory_path.read_text())
    inv["defaults"]["certificate"] = {"key": "rsa-2048", "subject": {"O": hostile[:64]}}
    path = tmp_path / "hostile.yaml"
    path.write_text(yaml.safe_dump(inv))
    name = next(iter(sim.devices))
    result = cli("enroll", "-i", str(path), "--scep", scep_server.url, "--ca-fingerprint",
                 scep_server.ca_sha256, "--challenge", "env:TEST_SCEP_CHALLENGE",
                 "--limit", name, "-o", "json")
    assert result.exit_code == 0, result.output
    enrolled = next(c for c in sim.devices[name].services if "802.1X" in c.purposes)
    orgs = enrolled.cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    assert [o.value for o in orgs] == [hostile[:64]]
    common = enrolled.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert [c.value for c in common] == [name]
