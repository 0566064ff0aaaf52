"""A passphrase that encrypts private keys (the journal's, `csr`'s key files, the local CA's
key) must be at least 8 characters: a shorter one is refused with exit 2, naming the
reference, before any key is made or device contacted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

SHORT = "abc1234"  # 7 characters


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    secret = tmp_path / "pw"
    secret.write_text("device-password\n")
    secret.chmod(0o600)
    inv = tmp_path / "inv.yaml"
    inv.write_text(f"defaults: {{username: admin, password: 'file:{secret}', verify: insecure}}\n"
                   "devices:\n  room-1: {host: 127.0.0.1, port: 9}\n")
    return inv


def refused(result: Any, ref: str) -> None:
    assert result.exit_code == 2, result.output
    assert ref in result.output and "8 characters" in result.output
    assert SHORT not in result.output


def test_rotate_refuses_a_short_journal_passphrase(inventory: Path, tmp_path: Path, cli: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CERTFLEET_JOURNAL_PASSPHRASE", SHORT)
    monkeypatch.setenv("CERTFLEET_CA_PASSPHRASE", "a-long-ca-passphrase")
    assert cli("ca", "init", "--dir", str(tmp_path / "ca"), "--cn", "Lab").exit_code == 0
    result = cli("rotate", "-i", str(inventory), "--purpose", "HTTPS", "--signer", "local-ca",
                 "--ca-dir", str(tmp_path / "ca"), "--force")
    refused(result, "env:CERTFLEET_JOURNAL_PASSPHRASE")


def test_csr_refuses_a_short_key_passphrase(inventory: Path, tmp_path: Path, cli: Any,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CF_KEY_PASS", SHORT)
    out = tmp_path / "out"
    result = cli("csr", "-i", str(inventory), "--out", str(out), "--passphrase",
                 "env:CF_KEY_PASS")
    refused(result, "env:CF_KEY_PASS")
    assert not out.exists() or not any(out.iterdir())


def test_ca_init_refuses_a_short_passphrase(tmp_path: Path, cli: Any,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CF_CA_PASS", SHORT)
    result = cli("ca", "init", "--dir", str(tmp_path / "ca"), "--cn", "Lab",
                 "--passphrase", "env:CF_CA_PASS")
    refused(result, "env:CF_CA_PASS")
    assert not (tmp_path / "ca" / "ca.key").exists()
