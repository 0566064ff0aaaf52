"""Inputs that can be checked before any device is contacted are: exit 2, one clear message
naming the option, and roomsim sees not a single request (not even a login)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

FP = "ab" * 32  # a well-formed SHA-256 fingerprint (of no CA in particular)


def requests_seen(sim: Any) -> int:
    return sum(device.requests_seen for device in sim.devices.values())


def assert_refused_up_front(result: Any, sim: Any, *names: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    message = " ".join(result.stderr.split())
    assert message.startswith("error: "), result.stderr
    for name in names:
        assert name in message, message
    assert requests_seen(sim) == 0


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["enroll", "--scep", "ftp://x", "--ca-fingerprint", FP, "--challenge", "env:CH"],
         "--scep"),
        (["enroll", "--scep", "not a url", "--ca-fingerprint", FP, "--challenge", "env:CH"],
         "--scep"),
        (["enroll", "--scep", "http://[::1", "--ca-fingerprint", FP, "--challenge", "env:CH"],
         "--scep"),
        (["enroll", "--scep", "http://127.0.0.1:9/scep", "--ca-fingerprint", "zz",
          "--challenge", "env:CH"], "--ca-fingerprint"),
        (["rotate", "--purpose", "HTTPS", "--signer", "scep", "--scep-url", "ftp://x",
          "--scep-ca-fingerprint", FP], "--scep-url"),
        (["rotate", "--purpose", "HTTPS", "--signer", "scep", "--scep-url", "not a url",
          "--scep-ca-fingerprint", FP], "--scep-url"),
        (["rotate", "--purpose", "HTTPS", "--signer", "scep", "--scep-url",
          "http://127.0.0.1:9/scep", "--scep-ca-fingerprint", "zz"], "--scep-ca-fingerprint"),
    ],
)
def test_bad_scep_options_are_one_line_and_exit_2(
    cli: Any, sim: Any, args: list[str], option: str
) -> None:
    result = cli(*args, "-i", str(sim.inventory_path),
                 env={"CH": "challenge-1234", "CERTFLEET_JOURNAL_PASSPHRASE": "journal-pass-1"})
    assert_refused_up_front(result, sim, option)
    assert len(result.stderr.strip().splitlines()) <= 2  # one message (rich may wrap it once)


def test_scep_url_credentials_are_not_echoed(cli: Any, sim: Any) -> None:
    result = cli("enroll", "--scep", "ftp://scepuser:hunter2-scep@127.0.0.1/x",
                 "--ca-fingerprint", FP, "--challenge", "env:CH", "-i", str(sim.inventory_path),
                 env={"CH": "challenge-1234"})
    assert_refused_up_front(result, sim, "--scep")
    assert "hunter2-scep" not in result.output


def test_unresolvable_challenge_is_refused_before_any_login(cli: Any, sim: Any) -> None:
    first = sorted(sim.devices)[0]
    env = {f"CH_{name.upper().replace('-', '_')}": "one-time-1234"
           for name in sorted(sim.devices)[1:]}
    env[f"CH_{first.upper().replace('-', '_')}"] = None  # type: ignore[assignment]
    result = cli("enroll", "--scep", "http://127.0.0.1:9/scep", "--ca-fingerprint", FP,
                 "--challenge", "env:CH_{NAME}", "-i", str(sim.inventory_path), env=env)
    assert_refused_up_front(result, sim, "--challenge", first)
    assert "one-time-1234" not in result.output


def _self_signed(name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def test_push_cert_key_that_does_not_match_is_refused_before_any_login(
    cli: Any, sim: Any, tmp_path: Path
) -> None:
    cert, _ = _self_signed("room.example")
    _, other = _self_signed("other.example")
    cert_path = tmp_path / "room.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path = tmp_path / "other.key.pem"
    key_path.write_bytes(other.private_bytes(serialization.Encoding.PEM,
                                             serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
    key_path.chmod(0o600)
    result = cli("push-cert", "--purpose", "HTTPS", "--cert", str(cert_path), "--key",
                 str(key_path), "-i", str(sim.inventory_path))
    assert_refused_up_front(result, sim, str(key_path), "does not match")


def test_push_cert_dir_with_one_mismatched_key_is_refused_before_any_login(
    cli: Any, sim: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "certs"
    folder.mkdir()
    names = sorted(sim.devices)
    for index, name in enumerate(names):
        cert, key = _self_signed(f"{name}.example")
        if index == len(names) - 1:
            _, key = _self_signed("someone-else.example")
        (folder / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file = folder / f"{name}.key.pem"
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        key_file.chmod(0o600)
    result = cli("push-cert", "--purpose", "HTTPS", "--dir", str(folder),
                 "-i", str(sim.inventory_path))
    assert_refused_up_front(result, sim, f"{names[-1]}.key.pem", "does not match")


def test_unresolvable_signer_secrets_name_their_option(cli: Any, sim: Any, tmp_path: Path) -> None:
    env = {"CERTFLEET_JOURNAL_PASSPHRASE": "journal-pass-1", "UNSET_CH": None}
    scep = cli("rotate", "--purpose", "HTTPS", "--signer", "scep", "--scep-url",
               "http://127.0.0.1:9/scep", "--scep-ca-fingerprint", FP, "--scep-challenge",
               "env:UNSET_CH", "-i", str(sim.inventory_path), env=env)
    assert_refused_up_front(scep, sim, "--scep-challenge", "UNSET_CH")
    local = cli("rotate", "--purpose", "HTTPS", "--signer", "local-ca", "--ca-dir",
                str(tmp_path), "--ca-passphrase", "env:UNSET_CH",
                "-i", str(sim.inventory_path), env=env)
    assert_refused_up_front(local, sim, "--ca-passphrase", "UNSET_CH")
