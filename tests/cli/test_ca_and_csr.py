"""certfleet ca init|sign|show and certfleet csr: files, modes, exit codes — and never a key or a
passphrase in what is printed."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from debian_packages import openssl

from certfleet.fleet.secrets import register_secret

CA_PASSPHRASE = "cli-ca-passphrase-0b7e41"
KEY_PASSPHRASE = "cli-key-passphrase-5aa9c2"
WRONG = "cli-wrong-passphrase-d1e2f3"
ENV = {"LAB_CA_PASS": CA_PASSPHRASE, "LAB_KEY_PASS": KEY_PASSPHRASE, "LAB_WRONG": WRONG,
       "COLUMNS": "200"}


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _clean(result: Any) -> None:
    """No key material, no passphrase (not even masked, since it was never printed)."""
    out = result.output
    for needle in ("PRIVATE KEY", CA_PASSPHRASE, KEY_PASSPHRASE, WRONG):
        assert needle not in out, f"{needle!r} in output"


def _run(cli: Any, *args: str) -> Any:
    result = cli(*args, env=ENV)
    _clean(result)
    return result


def _openssl(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **ENV}
    return subprocess.run([openssl(), *args], capture_output=True, text=True, check=False,
                          env=env)


@pytest.fixture
def lab_ca(cli: Any, tmp_path: Path) -> Path:
    folder = tmp_path / "lab-ca"
    result = _run(cli, "ca", "init", "--dir", str(folder), "--cn", "Lab Root", "--org",
                  "Example", "--passphrase", "env:LAB_CA_PASS")
    assert result.exit_code == 0, result.output
    return folder


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    path = tmp_path / "inv.yaml"
    path.write_text(
        "defaults:\n"
        "  username: admin\n"
        "  password: env:NOT_NEEDED_FOR_CSR\n"
        "  certificate:\n"
        "    key: ec-p256\n"
        "    subject: {C: no, O: Example, OU: Rooms, CN: '{name}'}\n"
        "    san_dns: ['{name}.rooms.example.com']\n"
        "groups:\n"
        "  oslo: {tags: [norway]}\n"
        "devices:\n"
        "  room-1: {host: 10.0.0.1, groups: [oslo]}\n"
        "  room-2: {host: room-2.rooms.example.com}\n"
        "  room-3:\n"
        "    host: 10.0.0.3\n"
        "    certificate: {key: rsa-2048, san_ip: ['{host}']}\n"
    )
    return path


# ----------------------------------------------------------------------------- ca


def test_ca_init_writes_an_encrypted_0600_key(cli: Any, lab_ca: Path) -> None:
    key_file, cert_file = lab_ca / "ca.key", lab_ca / "ca.pem"
    assert _mode(key_file) == 0o600
    assert key_file.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert CA_PASSPHRASE.encode() not in key_file.read_bytes()
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    assert cert.subject.rfc4514_string() == "CN=Lab Root,O=Example"
    # OpenSSL opens the key with the passphrase, and not with another
    opened = _openssl("pkey", "-in", str(key_file), "-passin", "env:LAB_CA_PASS", "-noout")
    assert opened.returncode == 0, opened.stderr
    refused = _openssl("pkey", "-in", str(key_file), "-passin", "env:LAB_WRONG", "-noout")
    assert refused.returncode != 0


def test_ca_init_output_and_refusal_to_overwrite(cli: Any, tmp_path: Path) -> None:
    folder = tmp_path / "ca"
    first = _run(cli, "ca", "init", "--dir", str(folder), "--cn", "Lab Root",
                 "--passphrase", "env:LAB_CA_PASS", "--key", "rsa-3072", "--days", "30")
    assert first.exit_code == 0, first.output
    assert "local CA created" in first.stdout and "/CN=Lab Root" in first.stdout
    assert "SHA-256" in first.stdout and "rsa-3072" in first.stdout
    before = (folder / "ca.key").read_bytes()
    again = _run(cli, "ca", "init", "--dir", str(folder), "--cn", "Other",
                 "--passphrase", "env:LAB_CA_PASS")
    assert again.exit_code == 2
    assert "already holds a CA; refusing to overwrite it" in again.stderr
    assert (folder / "ca.key").read_bytes() == before


def test_passphrase_must_be_a_reference(cli: Any, tmp_path: Path) -> None:
    literal = "literal-passphrase-on-the-command-line"
    register_secret(literal)
    result = cli("ca", "init", "--dir", str(tmp_path / "x"), "--cn", "X",
                 "--passphrase", literal, env=ENV)
    assert result.exit_code == 2
    assert "--passphrase" in result.stderr and "env:VAR" in result.stderr
    assert literal not in result.output
    assert not (tmp_path / "x").exists()
    missing = cli("ca", "init", "--dir", str(tmp_path / "y"), "--cn", "X",
                  "--passphrase", "env:CERTFLEET_TEST_UNSET_VAR", env=ENV)
    assert missing.exit_code == 2 and "CERTFLEET_TEST_UNSET_VAR is not set" in missing.stderr


def test_ca_show(cli: Any, lab_ca: Path) -> None:
    cert = x509.load_pem_x509_certificate((lab_ca / "ca.pem").read_bytes())
    table = _run(cli, "ca", "show", "--dir", str(lab_ca))
    assert table.exit_code == 0
    assert cert.fingerprint(hashes.SHA1()).hex() in table.stdout
    assert cert.fingerprint(hashes.SHA256()).hex() in table.stdout
    document = _run(cli, "ca", "show", "--dir", str(lab_ca), "-o", "json").json()
    assert document["schema"] == "certfleet/ca/v1"
    assert document["subject"] == "/O=Example/CN=Lab Root"
    assert document["not_after"] == cert.not_valid_after_utc.isoformat()
    assert len(document["sha1"]) == 40 and len(document["sha256"]) == 64
    nothing = _run(cli, "ca", "show", "--dir", str(lab_ca.parent / "nope"))
    assert nothing.exit_code == 2 and "certfleet ca init" in nothing.stderr


# ---------------------------------------------------------------------------- csr


def test_csr_then_ca_sign_then_openssl_verify(cli: Any, inventory: Path, lab_ca: Path,
                                              tmp_path: Path) -> None:
    out = tmp_path / "csrs"
    made = _run(cli, "csr", "--out", str(out), "-i", str(inventory))
    assert made.exit_code == 0, made.output
    for name in ("room-1", "room-2", "room-3"):
        assert name in made.stdout
        key_file, csr_file = out / f"{name}.key.pem", out / f"{name}.csr.pem"
        assert _mode(key_file) == 0o600
        assert key_file.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
        check = _openssl("req", "-verify", "-noout", "-in", str(csr_file))
        assert check.returncode == 0, check.stderr
    assert "/C=NO/O=Example/OU=Rooms/CN=room-1" in made.stdout
    assert "DNS:room-2.rooms.example.com" in made.stdout
    assert "IP:10.0.0.3" in made.stdout and "rsa-2048" in made.stdout
    assert "not encrypted" in made.stderr
    # sign one to stdout, one to a file
    signed = _run(cli, "ca", "sign", str(out / "room-1.csr.pem"), "--dir", str(lab_ca),
                  "--passphrase", "env:LAB_CA_PASS", "--days", "30")
    assert signed.exit_code == 0, signed.output
    assert signed.stdout.startswith("-----BEGIN CERTIFICATE-----")
    leaf = tmp_path / "room-1.pem"
    leaf.write_text(signed.stdout)
    verify = _openssl("verify", "-CAfile", str(lab_ca / "ca.pem"), str(leaf))
    assert verify.returncode == 0 and ": OK" in verify.stdout, verify.stdout + verify.stderr
    to_file = _run(cli, "ca", "sign", str(out / "room-3.csr.pem"), "--dir", str(lab_ca),
                   "--passphrase", "env:LAB_CA_PASS", "--out", str(tmp_path / "room-3.pem"))
    assert to_file.exit_code == 0 and to_file.stdout == ""
    assert "certificate issued" in to_file.stderr and "IP:10.0.0.3" in to_file.stderr
    verify = _openssl("verify", "-CAfile", str(lab_ca / "ca.pem"), str(tmp_path / "room-3.pem"))
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_ca_sign_with_wrong_passphrase(cli: Any, inventory: Path, lab_ca: Path,
                                       tmp_path: Path) -> None:
    out = tmp_path / "csrs"
    assert _run(cli, "csr", "--out", str(out), "-i", str(inventory), "-l", "room-2").exit_code == 0
    result = _run(cli, "ca", "sign", str(out / "room-2.csr.pem"), "--dir", str(lab_ca),
                  "--passphrase", "env:LAB_WRONG")
    assert result.exit_code == 2
    assert "wrong passphrase for the CA key" in result.stderr and result.stdout == ""


def test_ca_sign_refuses_what_is_not_a_csr(cli: Any, lab_ca: Path) -> None:
    result = _run(cli, "ca", "sign", str(lab_ca / "ca.pem"), "--dir", str(lab_ca),
                  "--passphrase", "env:LAB_CA_PASS")
    assert result.exit_code == 2 and "is not a CSR" in result.stderr
    gone = _run(cli, "ca", "sign", str(lab_ca / "nope.csr"), "--dir", str(lab_ca),
                "--passphrase", "env:LAB_CA_PASS")
    assert gone.exit_code == 2 and "nope.csr: does not exist" in gone.stderr


def test_csr_with_passphrase_key_override_limit_and_json(cli: Any, inventory: Path,
                                                         tmp_path: Path) -> None:
    out = tmp_path / "enc"
    result = _run(cli, "csr", "--out", str(out), "-i", str(inventory), "--limit", "group:oslo",
                  "--key", "ec-p384", "--passphrase", "env:LAB_KEY_PASS", "-o", "json")
    assert result.exit_code == 0, result.output
    document = result.json()
    assert document["schema"] == "certfleet/csr/v1"
    [entry] = document["devices"]
    assert entry["device"] == "room-1" and entry["key"] == "ec-p384"
    assert entry["key_encrypted"] is True and len(entry["public_key_sha256"]) == 64
    assert sorted(p.name for p in out.iterdir()) == ["room-1.csr.pem", "room-1.key.pem"]
    key_file = out / "room-1.key.pem"
    assert key_file.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert _mode(key_file) == 0o600
    text = _openssl("pkey", "-in", str(key_file), "-passin", "env:LAB_KEY_PASS", "-noout",
                    "-text_pub")
    assert text.returncode == 0, text.stderr
    assert "384" in text.stdout
    assert "not encrypted" not in result.stderr


def test_csr_refuses_to_replace_keys_without_force(cli: Any, inventory: Path,
                                                   tmp_path: Path) -> None:
    out = tmp_path / "again"
    assert _run(cli, "csr", "--out", str(out), "-i", str(inventory), "-l", "room-1").exit_code == 0
    before = (out / "room-1.key.pem").read_bytes()
    again = _run(cli, "csr", "--out", str(out), "-i", str(inventory), "-l", "room-1")
    assert again.exit_code == 2 and "--force" in again.stderr
    assert (out / "room-1.key.pem").read_bytes() == before
    forced = _run(cli, "csr", "--out", str(out), "-i", str(inventory), "-l", "room-1", "--force")
    assert forced.exit_code == 0
    assert (out / "room-1.key.pem").read_bytes() != before
    assert _mode(out / "room-1.key.pem") == 0o600


def test_csr_input_errors(cli: Any, inventory: Path, tmp_path: Path) -> None:
    bad_key = _run(cli, "csr", "--out", str(tmp_path / "o"), "-i", str(inventory),
                   "--key", "rsa-1024")
    assert bad_key.exit_code == 2 and "rsa-1024" in bad_key.stderr
    nobody = _run(cli, "csr", "--out", str(tmp_path / "o"), "-i", str(inventory),
                  "-l", "nobody")
    assert nobody.exit_code == 2
    bad_country = tmp_path / "bad.yaml"
    bad_country.write_text(
        "defaults: {password: env:X, certificate: {subject: {C: '{name}'}}}\n"
        "devices:\n  room-1: {host: h}\n"
    )
    result = _run(cli, "csr", "--out", str(tmp_path / "o"), "-i", str(bad_country))
    assert result.exit_code == 2 and "room-1" in result.stderr
    assert not (tmp_path / "o").exists()  # nothing was made


def test_csr_writes_nothing_when_one_file_name_is_too_long(cli: Any, tmp_path: Path) -> None:
    # the long name's key is slow (RSA-4096), the others' fast: before the check, their files
    # were written by the time the long one failed
    long_name = "r" * 250  # a valid device name; "<name>.key.pem" is over NAME_MAX (255)
    path = tmp_path / "long.yaml"
    path.write_text(
        "defaults: {password: env:X, certificate: {key: ec-p256, subject: {CN: room}}}\n"
        "devices:\n"
        "  aaa-1: {host: 127.0.0.1}\n"
        f"  {long_name}: {{host: 127.0.0.2, certificate: {{key: rsa-4096}}}}\n"
        "  zzz-3: {host: 127.0.0.3}\n"
    )
    out = tmp_path / "out"
    result = _run(cli, "csr", "--out", str(out), "-i", str(path))
    assert result.exit_code == 2, result.output
    message = " ".join(result.stderr.split())
    assert long_name in message and "too long" in message
    assert not out.exists() or list(out.iterdir()) == []
