"""Bad input ends in exit 2 with a message that names the file, line or key — and nothing is
touched on any device."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from certfleet.fleet.pki.local_ca import create_ca


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    pw = tmp_path / "pw"
    pw.write_text("secret-for-tests\n")
    pw.chmod(0o600)
    path = tmp_path / "inv.yaml"
    path.write_text(
        "defaults:\n"
        "  username: admin\n"
        f"  password: file:{pw}\n"
        "  verify: system\n"
        "devices:\n"
        "  room-1: {host: 127.0.0.1, port: 9}\n"
        "  room-2: {host: 127.0.0.1, port: 9, tags: [board]}\n"
    )
    return path


def test_ca_file_that_is_not_a_certificate(cli: Any, inventory: Path, tmp_path: Path) -> None:
    bogus = tmp_path / "notes.txt"
    bogus.write_text("hello, I am not a certificate\n")
    result = cli("push-ca", str(bogus), "-i", str(inventory))
    assert result.exit_code == 2
    assert str(bogus) in result.stderr and "not a PEM" in result.stderr


def test_ca_file_holding_a_private_key(cli: Any, inventory: Path, tmp_path: Path) -> None:
    ca = create_ca("Leaky CA")
    key = ca.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    leaky = tmp_path / "leaky.pem"
    leaky.write_text(ca.cert_pem + key)
    result = cli("push-ca", str(leaky), "-i", str(inventory))
    assert result.exit_code == 2
    assert "private key" in result.stderr and str(leaky) in result.stderr
    assert "BEGIN PRIVATE KEY" not in result.output


def test_expired_ca(cli: Any, inventory: Path, tmp_path: Path) -> None:
    old = create_ca("Old CA", days=30, now=dt.datetime.now(dt.UTC) - dt.timedelta(days=400))
    path = tmp_path / "old.pem"
    path.write_text(old.cert_pem)
    result = cli("push-ca", str(path), "-i", str(inventory))
    assert result.exit_code == 2
    assert "expired" in result.stderr


def test_missing_ca_file(cli: Any, inventory: Path, tmp_path: Path) -> None:
    result = cli("push-ca", str(tmp_path / "nope.pem"), "-i", str(inventory))
    assert result.exit_code == 2
    assert "nope.pem" in result.stderr and "does not exist" in result.stderr


def test_inventory_typo_names_line_and_key(cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text(
        "defaults:\n  username: admin\n  password: env:X\n"
        "devices:\n  room-1:\n    host: 127.0.0.1\n    pasword: env:Y\n"
    )
    result = cli("status", "-i", str(path))
    assert result.exit_code == 2
    assert f"{path}:7" in result.stderr
    assert "pasword" in result.stderr and "password" in result.stderr
    check = cli("inventory", "check", "-i", str(path))
    assert check.exit_code == 2
    assert f"{path}:7" in check.stderr


def test_literal_password_is_refused_without_echoing_it(cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "literal.yaml"
    path.write_text("defaults: {password: hunter2-literal}\ndevices:\n  r: {host: h}\n")
    result = cli("inventory", "check", "-i", str(path))
    assert result.exit_code == 2
    assert "env:" in result.stderr
    assert "hunter2-literal" not in result.output


def test_unknown_limit(cli: Any, inventory: Path) -> None:
    result = cli("inventory", "list", "-i", str(inventory), "--limit", "tag:nosuch")
    assert result.exit_code == 2
    assert "nosuch" in result.stderr


def test_missing_secret_is_an_input_error_before_any_device(cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "env.yaml"
    path.write_text(
        "defaults: {username: admin, password: 'env:CERTFLEET_TEST_UNSET_VAR'}\n"
        "devices:\n  room-1: {host: 127.0.0.1, port: 9}\n"
    )
    result = cli("status", "-i", str(path), env={"CERTFLEET_TEST_UNSET_VAR": None})
    assert result.exit_code == 2
    assert "CERTFLEET_TEST_UNSET_VAR" in result.stderr


def test_no_inventory_at_all(cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli("status", env={"CERTFLEET_INVENTORY": None})
    assert result.exit_code == 2
    assert "no inventory" in result.stderr


def test_inventory_list_and_check(cli: Any, inventory: Path) -> None:
    listed = cli("inventory", "list", "-i", str(inventory), "-o", "json")
    assert listed.exit_code == 0
    doc = listed.json()
    assert [d["name"] for d in doc["devices"]] == ["room-1", "room-2"]
    assert "secret-for-tests" not in listed.output
    only = cli("-i", str(inventory), "inventory", "list", "--limit", "tag:board")
    assert only.exit_code == 0 and "room-2" in only.stdout and "room-1" not in only.stdout
    check = cli("inventory", "check", "-i", str(inventory))
    assert check.exit_code == 0, check.output
    assert "2 device(s)" in check.stdout


def test_version(cli: Any) -> None:
    result = cli("--version")
    assert result.exit_code == 0 and result.stdout.startswith("certfleet ")
