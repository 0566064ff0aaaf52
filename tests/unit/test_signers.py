"""Tests for the local CA and the signers: local-ca, files (two-phase) and command (an external
program, here tiny Python scripts)."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from debian_packages import openssl

from certfleet.fleet.errors import InputError, SignerError, SigningPending
from certfleet.fleet.inventory import Device, RenderedCertificate
from certfleet.fleet.pki.checks import check_for_device
from certfleet.fleet.pki.csr import build_csr, csr_pem
from certfleet.fleet.pki.keys import PrivateKey, generate_key, key_to_pem, same_public_key
from certfleet.fleet.pki.local_ca import (
    LocalCa,
    create_ca,
    init_local_ca,
    load_local_ca,
)
from certfleet.fleet.pki.signers.base import Signer, SigningRequest
from certfleet.fleet.pki.signers.command import CommandSigner
from certfleet.fleet.pki.signers.files import FilesSigner
from certfleet.fleet.pki.signers.local_ca import LocalCaSigner
from certfleet.fleet.secrets import MASK, Secret, register_secret

PASSPHRASE = "signers-ca-passphrase-3e9a"
DEVICE = Device(name="room-1", host="room-1.rooms.example.com")
RENDERED = RenderedCertificate(
    subject=(("C", "NO"), ("O", "Example"), ("CN", "room-1")),
    san_dns=("room-1.rooms.example.com",),
    san_ip=("10.0.0.7",),
)


@pytest.fixture(scope="module")
def ca() -> LocalCa:
    return create_ca("Signers Test Root", organization="Example")


@pytest.fixture(scope="module")
def ec_key() -> PrivateKey:
    return generate_key("ec-p256")


@pytest.fixture(scope="module")
def rsa_key() -> PrivateKey:
    return generate_key("rsa-2048")


def request_for(key: PrivateKey, device: Device = DEVICE) -> SigningRequest:
    return SigningRequest(device=device, csr=build_csr(key, RENDERED), key=key,
                          purposes=("HTTPS", "802.1X"), metadata={"run_id": "r-42"})


def openssl_verify(tmp_path: Path, ca_cert: x509.Certificate, leaf: x509.Certificate,
                   chain: tuple[x509.Certificate, ...] = ()) -> None:
    ca_file, leaf_file = tmp_path / "verify-ca.pem", tmp_path / "verify-leaf.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    leaf_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    args = [openssl(), "verify", "-CAfile", str(ca_file)]
    if chain:
        chain_file = tmp_path / "verify-chain.pem"
        chain_file.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM)
                                        for c in chain))
        args += ["-untrusted", str(chain_file)]
    result = subprocess.run([*args, str(leaf_file)], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0 and ": OK" in result.stdout, result.stdout + result.stderr


# ------------------------------------------------------------------------- local CA


def test_sign_csr_issues_what_roomos_needs(ca: LocalCa, ec_key: PrivateKey,
                                           tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    csr = build_csr(ec_key, RENDERED)
    cert = ca.sign_csr(csr, days=30, now=now)
    assert cert.subject == csr.subject and cert.issuer == ca.cert.subject
    assert same_public_key(cert, ec_key)
    ext = cert.extensions
    assert ext.get_extension_for_class(x509.SubjectAlternativeName).value == \
        csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    bc = ext.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    ku = ext.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and not ku.key_encipherment  # EC: no keyEncipherment
    assert list(ext.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    ski = ext.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(ec_key.public_key())
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    assert cert.not_valid_before_utc == (now - dt.timedelta(minutes=5)).replace(microsecond=0)
    assert cert.not_valid_after_utc == (now + dt.timedelta(days=30)).replace(microsecond=0)
    assert cert.serial_number != ca.sign_csr(csr).serial_number
    openssl_verify(tmp_path, ca.cert, cert)
    check_for_device(DEVICE, cert, (), ec_key, trusted=[ca.cert],
                     purposes=["HTTPS", "SIP", "802.1X", "Audit"], source="local-ca")


def test_rsa_leaf_gets_key_encipherment(ca: LocalCa, rsa_key: PrivateKey) -> None:
    cert = ca.sign_csr(build_csr(rsa_key, RENDERED))
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and ku.key_encipherment


def test_not_after_is_cut_at_the_ca(ec_key: PrivateKey) -> None:
    short = create_ca("Short CA", days=10)
    cert = short.sign_csr(build_csr(ec_key, RENDERED), days=365)
    assert cert.not_valid_after_utc == short.cert.not_valid_after_utc


def test_forged_csr_is_refused(ca: LocalCa, ec_key: PrivateKey) -> None:
    der = bytearray(build_csr(ec_key, RENDERED).public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01
    forged = x509.load_der_x509_csr(bytes(der))
    with pytest.raises(InputError, match="signature does not verify"):
        ca.sign_csr(forged)


def test_expired_ca_refuses(ec_key: PrivateKey) -> None:
    old = create_ca("Old", days=1, now=dt.datetime.now(dt.UTC) - dt.timedelta(days=5))
    with pytest.raises(InputError, match="expired"):
        old.sign_csr(build_csr(ec_key, RENDERED))


@pytest.mark.parametrize("kind", ["ec-p256", "rsa-3072"])
def test_init_and_load_a_ca_on_disk(tmp_path: Path, kind: str, rsa_key: PrivateKey) -> None:
    folder = tmp_path / "lab-ca"
    made = init_local_ca(folder, common_name="Lab Root", organization="Example",
                         key_kind=kind, days=100, passphrase=Secret(PASSPHRASE))
    key_file, cert_file = folder / "ca.key", folder / "ca.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert PASSPHRASE.encode() not in key_file.read_bytes()
    assert cert_file.read_text() == made.cert_pem
    loaded = load_local_ca(folder, Secret(PASSPHRASE))
    assert loaded.cert == made.cert and same_public_key(loaded.key, made.key)
    cert = loaded.sign_csr(build_csr(rsa_key, RENDERED))
    openssl_verify(tmp_path, loaded.cert, cert)  # `openssl verify -CAfile ca.pem leaf.pem`


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    init_local_ca(tmp_path, common_name="First", passphrase=Secret(PASSPHRASE))
    before = (tmp_path / "ca.pem").read_bytes(), (tmp_path / "ca.key").read_bytes()
    with pytest.raises(InputError, match="already holds a CA; refusing to overwrite"):
        init_local_ca(tmp_path, common_name="Second", passphrase=Secret(PASSPHRASE))
    assert ((tmp_path / "ca.pem").read_bytes(), (tmp_path / "ca.key").read_bytes()) == before


def test_init_checks_its_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="shorter than 8"):
        init_local_ca(tmp_path / "a", common_name="X", passphrase=Secret("short12"))
    with pytest.raises(InputError, match="rsa-3072"):
        init_local_ca(tmp_path / "b", common_name="X", key_kind="rsa-2048",
                      passphrase=Secret(PASSPHRASE))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_load_with_wrong_passphrase_is_clear_and_quiet(tmp_path: Path) -> None:
    init_local_ca(tmp_path, common_name="Lab", passphrase=Secret(PASSPHRASE))
    wrong = "wrong-passphrase-for-the-ca-77"
    with pytest.raises(InputError) as info:
        load_local_ca(tmp_path, Secret(wrong))
    message = str(info.value)
    assert "wrong passphrase for the CA key" in message and str(tmp_path / "ca.key") in message
    assert wrong not in message and PASSPHRASE not in message


def test_load_without_a_ca(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no local CA in .*certfleet ca init"):
        load_local_ca(tmp_path, Secret(PASSPHRASE))


async def test_local_ca_signer(ca: LocalCa, ec_key: PrivateKey, tmp_path: Path) -> None:
    signer: Signer = LocalCaSigner(ca, days=90)
    assert signer.name == "local-ca"
    signed = await signer.sign(request_for(ec_key))
    assert signed.chain == ()
    assert same_public_key(signed.cert, ec_key)
    assert (signed.cert.not_valid_after_utc - signed.cert.not_valid_before_utc).days == 90
    openssl_verify(tmp_path, ca.cert, signed.cert)


async def test_local_ca_signer_failure_is_a_signer_error(ec_key: PrivateKey) -> None:
    old = create_ca("Old", days=1, now=dt.datetime.now(dt.UTC) - dt.timedelta(days=5))
    with pytest.raises(SignerError) as info:
        await LocalCaSigner(old).sign(request_for(ec_key))
    assert info.value.device == "room-1" and "expired" in info.value.message


# ---------------------------------------------------------------------------- files


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _intermediate(ca: LocalCa) -> LocalCa:
    """An intermediate CA under ``ca``, to give chains some length."""
    key = generate_key("ec-p256")
    now = dt.datetime.now(dt.UTC)
    name = x509.Name.from_rfc4514_string("CN=Signers Test Intermediate")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=900))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca.key.public_key()), critical=False)  # type: ignore[arg-type]
        .sign(ca.key, hashes.SHA256())
    )
    return LocalCa(cert=cert, key=key)


async def test_files_signer_two_phases(ca: LocalCa, ec_key: PrivateKey,
                                       tmp_path: Path) -> None:
    outbox, inbox = tmp_path / "out", tmp_path / "in"
    signer = FilesSigner(outbox, inbox)
    request = request_for(ec_key)
    with pytest.raises(SigningPending) as info:
        await signer.sign(request)
    csr_file = outbox / "room-1.csr.pem"
    assert info.value.device == "room-1"
    assert info.value.message == (
        f"CSR written to {csr_file}; put the signed certificate in {inbox / 'room-1.pem'} "
        "and run again"
    )
    assert x509.load_pem_x509_csr(csr_file.read_bytes()) == request.csr
    # still pending while the inbox is empty
    with pytest.raises(SigningPending):
        await signer.sign(request)
    # the CA's answer: chain in the wrong order, root included
    inter = _intermediate(ca)
    leaf = inter.sign_csr(request.csr)
    inbox.mkdir()
    (inbox / "room-1.pem").write_bytes(_pem(ca.cert, leaf, inter.cert))
    signed = await signer.sign(request)
    assert signed.cert == leaf and signed.chain == (inter.cert, ca.cert)


async def test_files_signer_named_file_with_another_key(ca: LocalCa, ec_key: PrivateKey,
                                                        tmp_path: Path) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    other = ca.sign_csr(build_csr(generate_key("ec-p256"), RENDERED))
    (inbox / "room-1.pem").write_bytes(_pem(other))
    with pytest.raises(SignerError) as info:
        await FilesSigner(tmp_path / "out", inbox).sign(request_for(ec_key))
    assert not isinstance(info.value, SigningPending)
    message = info.value.message
    assert str(inbox / "room-1.pem") in message and "holds no certificate for room-1's key" in message


async def test_files_signer_matches_by_key_not_by_name(ca: LocalCa, ec_key: PrivateKey,
                                                       tmp_path: Path) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    request = request_for(ec_key)
    # someone else's certificate, a CSR, a garbage file, then ours under a CA's serial name
    (inbox / "a-room-2.pem").write_bytes(
        _pem(ca.sign_csr(build_csr(generate_key("ec-p256"), RENDERED)))
    )
    (inbox / "b.csr.pem").write_bytes(csr_pem(request.csr))
    (inbox / "c-notes.crt").write_text("not a certificate")
    mine = ca.sign_csr(request.csr)
    (inbox / "0001-signed.cer").write_bytes(_pem(mine))
    signed = await FilesSigner(tmp_path / "out", inbox).sign(request)
    assert signed.cert == mine and signed.chain == ()


async def test_files_signer_ignores_other_devices_certificates(
    ca: LocalCa, ec_key: PrivateKey, tmp_path: Path
) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "room-2.pem").write_bytes(
        _pem(ca.sign_csr(build_csr(generate_key("ec-p256"), RENDERED)))
    )
    with pytest.raises(SigningPending):
        await FilesSigner(tmp_path / "out", inbox).sign(request_for(ec_key))


# -------------------------------------------------------------------------- command


SIGN_SCRIPT = textwrap.dedent(
    """
    import datetime as dt, json, os, sys
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    ca_cert = x509.load_pem_x509_certificate(open(sys.argv[1], "rb").read())
    ca_key = serialization.load_pem_private_key(open(sys.argv[2], "rb").read(), None)
    env = {k: v for k, v in os.environ.items() if k.startswith("CERTFLEET_")}
    json.dump(env, open(sys.argv[3], "w"))
    csr = x509.load_pem_x509_csr(sys.stdin.buffer.read())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(ca_cert.subject)
            .public_key(csr.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=30))
            .sign(ca_key, hashes.SHA256()))
    # the CA first, then the leaf: certfleet puts them in order
    sys.stdout.buffer.write(ca_cert.public_bytes(serialization.Encoding.PEM))
    sys.stdout.buffer.write(cert.public_bytes(serialization.Encoding.PEM))
    """
)


def script(tmp_path: Path, name: str, body: str) -> list[str]:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return [sys.executable, str(path)]


@pytest.fixture
def ca_files(ca: LocalCa, tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "ca.pem", tmp_path / "ca.key"
    cert.write_text(ca.cert_pem)
    key.write_bytes(key_to_pem(ca.key, None))
    return cert, key


async def test_command_signer_success(ca: LocalCa, ca_files: tuple[Path, Path],
                                      ec_key: PrivateKey, tmp_path: Path) -> None:
    env_file = tmp_path / "env.json"
    argv = [*script(tmp_path, "sign.py", SIGN_SCRIPT), str(ca_files[0]), str(ca_files[1]),
            str(env_file)]
    signer = CommandSigner(argv, timeout=30)
    assert signer.name == "command"
    signed = await signer.sign(request_for(ec_key))
    assert same_public_key(signed.cert, ec_key)
    assert signed.chain == (ca.cert,)
    env = json.loads(env_file.read_text())
    assert env == {
        "CERTFLEET_DEVICE": "room-1",
        "CERTFLEET_HOST": "room-1.rooms.example.com",
        "CERTFLEET_PURPOSES": "HTTPS,802.1X",
        "CERTFLEET_CSR_SUBJECT": "/C=NO/O=Example/CN=room-1",
        "CERTFLEET_SANS": "DNS:room-1.rooms.example.com,IP:10.0.0.7",
        "CERTFLEET_RUN_ID": "r-42",
    } | {k: v for k, v in os.environ.items() if k.startswith("CERTFLEET_")}


async def test_command_signer_non_zero_exit(ec_key: PrivateKey, tmp_path: Path) -> None:
    secret = "command-stderr-secret-9f3b2"
    register_secret(secret)
    argv = script(tmp_path, "fail.py", f"""
        import sys
        sys.stdin.read()
        for n in range(10):
            print(f"line {{n}}", file=sys.stderr)
        print("token was {secret}", file=sys.stderr)
        print("CA says: request denied", file=sys.stderr)
        sys.exit(3)
        """)
    with pytest.raises(SignerError) as info:
        await CommandSigner(argv).sign(request_for(ec_key))
    message = info.value.message
    assert f"signing command {sys.executable} exited with code 3: " in message
    assert message.endswith("line 7 | line 8 | line 9 | token was ******** | CA says: request denied")
    assert secret not in message and MASK in message
    assert "line 4" not in message  # only the last lines


async def test_command_signer_timeout_kills_the_process_group(ec_key: PrivateKey,
                                                              tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    argv = script(tmp_path, "hang.py", f"""
        import os, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        open({str(pid_file)!r}, "w").write(f"{{os.getpid()}} {{child.pid}}")
        time.sleep(120)
        """)
    started = time.monotonic()
    with pytest.raises(SignerError) as info:
        await CommandSigner(argv, timeout=1.5).sign(request_for(ec_key))
    elapsed = time.monotonic() - started
    assert elapsed < 4.0
    assert "did not finish within 1.5 s; it was killed" in info.value.message
    pids = [int(p) for p in pid_file.read_text().split()]
    deadline = time.monotonic() + 3
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids), "the program or its child is still running"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")  # a zombie is dead, only not yet reaped by init


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("import sys; sys.stdin.read(); print('OK, signed!')",
         "printed no certificate on stdout (12 bytes, starting 'OK, signed!')"),
        ("import sys; sys.stdin.read()", "printed no certificate on stdout (stdout was empty)"),
        ("import sys; sys.stdin.read(); "
         "print('-----BEGIN CERTIFICATE-----\\nZm9v\\n-----END CERTIFICATE-----')",
         "does not decode"),
    ],
)
async def test_command_signer_garbage_output(ec_key: PrivateKey, tmp_path: Path, body: str,
                                             expected: str) -> None:
    argv = script(tmp_path, "garbage.py", body)
    with pytest.raises(SignerError) as info:
        await CommandSigner(argv).sign(request_for(ec_key))
    assert expected in info.value.message
    assert info.value.device == "room-1"


async def test_command_signer_certificate_for_another_key(
    ca: LocalCa, ca_files: tuple[Path, Path], ec_key: PrivateKey, tmp_path: Path
) -> None:
    stranger = ca.sign_csr(build_csr(generate_key("ec-p256"), RENDERED))
    stranger_file = tmp_path / "stranger.pem"
    stranger_file.write_bytes(_pem(stranger))
    argv = script(tmp_path, "wrong.py", f"""
        import sys
        sys.stdin.read()
        sys.stdout.write(open({str(stranger_file)!r}).read())
        """)
    with pytest.raises(SignerError, match="returned a certificate for another key"):
        await CommandSigner(argv).sign(request_for(ec_key))


async def test_command_signer_missing_program_and_signals(ec_key: PrivateKey,
                                                          tmp_path: Path) -> None:
    with pytest.raises(SignerError, match="not found"):
        await CommandSigner([str(tmp_path / "no-such-signer")]).sign(request_for(ec_key))
    argv = script(tmp_path, "die.py", "import os, signal; os.kill(os.getpid(), signal.SIGTERM)")
    with pytest.raises(SignerError, match="was killed by signal SIGTERM"):
        await CommandSigner(argv).sign(request_for(ec_key))
    with pytest.raises(InputError):
        CommandSigner([])
