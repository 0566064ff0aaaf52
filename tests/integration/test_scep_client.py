"""fleet.pki.scep and the scep signer against a real SCEP server (Debian's micromdm scepserver
2.1.0 on 127.0.0.1, see tests/scep_fixture.py), plus unit tests of the hand-made parts: the BER
walker, DES/3DES decryption, the request envelope and the pkiMessage (checked with openssl)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ipaddress
import logging
import secrets
import socket
import subprocess
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from asn1crypto import cms, core
from cryptography import x509
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from cryptography.x509.oid import AttributeOID, NameOID
from debian_packages import openssl
from scep_fixture import ScepServer

from certfleet.fleet.errors import ScepError, SignerError
from certfleet.fleet.fingerprints import CA_DIGEST_LENGTHS, normalize_fingerprint
from certfleet.fleet.inventory import Device, RenderedCertificate
from certfleet.fleet.pki import scep
from certfleet.fleet.pki.csr import build_csr
from certfleet.fleet.pki.scep import (
    CaInfo,
    ScepClient,
    build_scep_csr,
    csr_with_challenge,
    decrypt_content,
    decrypt_enveloped,
    octet_string_value,
    read_tlv,
    split_enveloped_data,
    tlv_children,
)
from certfleet.fleet.pki.scep import envelope as scep_envelope
from certfleet.fleet.pki.scep import lock as scep_lock
from certfleet.fleet.pki.scep import message as scep_message
from certfleet.fleet.pki.scep import reply as scep_reply
from certfleet.fleet.pki.signers.base import SigningRequest
from certfleet.fleet.pki.signers.scep import ScepSigner
from certfleet.fleet.secrets import Secret

# ------------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def cn_name(cn: str, org: str = "Example Corp") -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def spki(public: rsa.RSAPublicKey | object) -> bytes:
    assert isinstance(public, rsa.RSAPublicKey)
    return public.public_bytes(serialization.Encoding.DER,
                               serialization.PublicFormat.SubjectPublicKeyInfo)


def self_signed(key: rsa.RSAPrivateKey, cn: str, *, ca: bool = False) -> x509.Certificate:
    now = datetime.now(UTC)
    builder = (x509.CertificateBuilder().subject_name(cn_name(cn)).issuer_name(cn_name(cn))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - timedelta(minutes=5))
               .not_valid_after(now + timedelta(days=1)))
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None),
                                        critical=True)
    return builder.sign(key, hashes.SHA256())


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Wire(httpx.AsyncBaseTransport):
    """A real transport that records (method, operation) of every request and may rewrite the
    PKIOperation request body or the CertRep on the way."""

    def __init__(
        self,
        *,
        request_body: Callable[[bytes], bytes] | None = None,
        reply: Callable[[bytes], bytes] | None = None,
    ) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.seen: list[tuple[str, str | None]] = []
        self.messages: list[bytes] = []
        self.request_body = request_body
        self.reply = reply

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        operation = request.url.params.get("operation")
        self.seen.append((request.method, operation))
        if operation == "PKIOperation":
            body = (await request.aread() if request.method == "POST"
                    else base64.b64decode(request.url.params["message"]))
            self.messages.append(body)
            if self.request_body is not None:
                headers = {k: v for k, v in request.headers.items()
                           if k.lower() != "content-length"}
                request = httpx.Request("POST", request.url, headers=headers,
                                        content=self.request_body(body))
        response = await self.inner.handle_async_request(request)
        if operation != "PKIOperation" or self.reply is None:
            return response
        content = await response.aread()
        await response.aclose()
        headers = {k: v for k, v in response.headers.items()
                   if k.lower() not in ("content-length", "transfer-encoding")}
        return httpx.Response(response.status_code, headers=headers,
                              content=self.reply(content))

    async def aclose(self) -> None:
        await self.inner.aclose()


def wired_client(server: ScepServer, wire: Wire, **kwargs: object) -> ScepClient:
    http = httpx.AsyncClient(transport=wire, trust_env=False, follow_redirects=False)
    pin = kwargs.pop("ca_fingerprint", server.ca_sha256)
    return ScepClient(server.url, ca_fingerprint=pin, client=http, **kwargs)  # type: ignore[arg-type]


def issued_serials(server: ScepServer) -> list[int]:
    return [int(line.split("\t")[3], 16) for line in server.index_lines()]


# -------------------------------------------------------------------- GetCACaps/GetCACert


async def test_caps_and_ca_with_sha256_and_sha1_pins(scep_server: ScepServer) -> None:
    ca_cert = x509.load_pem_x509_certificate(scep_server.ca_pem.read_bytes())
    async with ScepClient(scep_server.url) as client:
        caps = await client.get_ca_caps()
        info = await client.get_ca()  # no pin: allowed, to show the fingerprint
    assert {"POSTPKIOperation", "SHA-256", "AES", "SCEPStandard"} <= caps
    assert info.caps == caps
    assert info.certs == (ca_cert,)
    assert info.ca == ca_cert
    assert info.recipient == ca_cert  # no RA: requests are encrypted to the CA
    assert info.ca_sha256 == scep_server.ca_sha256

    sha1 = hashlib.sha1(der(ca_cert)).hexdigest()
    colons = ":".join(scep_server.ca_sha256[i:i + 2] for i in range(0, 64, 2)).upper()
    spaced = " ".join(sha1[i:i + 4] for i in range(0, 40, 4))
    for pin in (scep_server.ca_sha256, colons, sha1.upper(), spaced):
        async with ScepClient(scep_server.url, ca_fingerprint=pin) as client:
            assert (await client.get_ca()).ca == ca_cert


@pytest.mark.parametrize("pin", ["abc", "0" * 32, "g" * 64, ""])
def test_malformed_fingerprints_are_refused(pin: str) -> None:
    with pytest.raises(ScepError, match=r"SHA-256 .64 hex digits"):
        ScepClient("http://127.0.0.1:9/scep", ca_fingerprint=pin)
    with pytest.raises(ValueError):
        normalize_fingerprint(pin, lengths=CA_DIGEST_LENGTHS)


# ------------------------------------------------------------------------------ enroll


async def test_enroll_issues_a_certificate_that_openssl_verifies(
    scep_server: ScepServer, key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    cn = unique("room-scep")
    san: list[x509.GeneralName] = [x509.DNSName(f"{cn}.example.test"),
                                   x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    challenge = Secret(scep_server.challenge)
    csr = build_scep_csr(key, cn_name(cn), san=san, challenge=challenge)
    before = issued_serials(scep_server)
    async with ScepClient(scep_server.url, ca_fingerprint=scep_server.ca_sha256) as client:
        result = await client.enroll(csr, key, challenge=challenge)

    ca_cert = x509.load_pem_x509_certificate(scep_server.ca_pem.read_bytes())
    cert = result.cert
    assert spki(cert.public_key()) == spki(key.public_key())
    assert cert.subject == cn_name(cn)
    assert list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value) \
        == san
    assert result.chain == (ca_cert,)
    assert result.transaction_id == hashlib.sha256(spki(key.public_key())).hexdigest()
    assert 0 < result.duration_ms < 10_000
    print(f"\nenrollment (GetCACert+GetCACaps+PKIOperation): {result.duration_ms:.1f} ms")

    path = tmp_path / "leaf.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    verify = subprocess.run([openssl(), "verify", "-CAfile", str(scep_server.ca_pem), str(path)],
                            capture_output=True, text=True, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert verify.stdout.strip().endswith(": OK")

    # the server recorded exactly this certificate
    assert issued_serials(scep_server) == [*before, cert.serial_number]
    stored = x509.load_pem_x509_certificate(
        scep_server.issued_file(cn, cert.serial_number).read_bytes())
    assert stored == cert


async def test_the_decrypted_certificate_is_used_not_the_clear_text_copy(
    scep_server: ScepServer, key: rsa.RSAPrivateKey
) -> None:
    """scepserver also puts the issued certificate in clear into the outer SignedData, which
    its signature does not cover. Swap that copy for a decoy (our key, the CA's name as
    issuer, our subject): the client must still return the one from the encrypted part."""
    cn = unique("room-decoy")
    decoy_signer = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_cert = x509.load_pem_x509_certificate(scep_server.ca_pem.read_bytes())
    now = datetime.now(UTC)
    decoy = (x509.CertificateBuilder().subject_name(cn_name(cn)).issuer_name(ca_cert.subject)
             .public_key(key.public_key()).serial_number(4242)
             .not_valid_before(now).not_valid_after(now + timedelta(days=30))
             .sign(decoy_signer, hashes.SHA256()))
    outer_certs: list[int] = []

    def swap_clear_copy(body: bytes) -> bytes:
        info = cms.ContentInfo.load(body)
        signed_data = info["content"]
        certs = [x509.load_der_x509_certificate(c.chosen.dump())
                 for c in signed_data["certificates"]]
        outer_certs.append(len(certs))
        replaced = [decoy if c.public_key() == key.public_key() else c for c in certs]
        signed_data["certificates"] = [cms.CertificateChoices.load(der(c)) for c in replaced]
        out: bytes = cms.ContentInfo({"content_type": "signed_data",
                                      "content": signed_data}).dump()
        return out

    wire = Wire(reply=swap_clear_copy)
    challenge = Secret(scep_server.challenge)
    async with wired_client(scep_server, wire) as client:
        result = await client.enroll(build_scep_csr(key, cn_name(cn), challenge=challenge),
                                     key, challenge=challenge)
    assert outer_certs == [2]  # the server did send the clear copy (and the CA), now a decoy
    assert result.cert != decoy
    assert result.cert.serial_number != 4242
    assert result.cert == x509.load_pem_x509_certificate(
        scep_server.issued_file(cn, result.cert.serial_number).read_bytes())
    result.cert.verify_directly_issued_by(ca_cert)


def _flip_content(body: bytes) -> bytes:
    content = cms.ContentInfo.load(body)["content"]["encap_content_info"]["content"].native
    assert body.count(content) == 1
    return body.replace(content, content[:-1] + bytes([content[-1] ^ 1]))


def _swap_transaction_id(body: bytes) -> bytes:
    signer_info = cms.ContentInfo.load(body)["content"]["signer_infos"][0]
    for attr in signer_info["signed_attrs"]:
        if attr["type"].dotted == scep.OID_TRANSACTION_ID:
            tid = attr["values"][0].native.encode()
            return body.replace(tid, tid[::-1])
    raise AssertionError("no transactionID in the CertRep")


@pytest.mark.parametrize(("tamper", "expected"), [
    (_flip_content, "messageDigest does not match"),
    (_swap_transaction_id, "signature does not verify"),
])
async def test_a_tampered_reply_is_rejected(
    scep_server: ScepServer, key: rsa.RSAPrivateKey,
    tamper: Callable[[bytes], bytes], expected: str,
) -> None:
    challenge = Secret(scep_server.challenge)
    async with wired_client(scep_server, Wire(reply=tamper)) as client:
        with pytest.raises(ScepError, match=expected):
            await client.enroll(build_scep_csr(key, cn_name(unique("room-tamper")),
                                               challenge=challenge), key, challenge=challenge)


async def test_wrong_challenge_is_bad_request_and_never_shown(
    scep_server: ScepServer, key: rsa.RSAPrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-" + secrets.token_urlsafe(12)
    challenge = Secret(wrong)
    before = scep_server.index_lines()
    async with ScepClient(scep_server.url, ca_fingerprint=scep_server.ca_sha256) as client:
        with pytest.raises(ScepError) as caught:
            await client.enroll(build_scep_csr(key, cn_name(unique("room-bad")),
                                               challenge=challenge), key, challenge=challenge)
    exc = caught.value
    assert exc.fail_info == "badRequest"
    assert "FAILURE badRequest" in str(exc)
    for text in (str(exc), repr(exc), exc.message, caplog.text):
        assert wrong not in text
        assert scep_server.challenge not in text
    assert scep_server.index_lines() == before
    assert "invalid challenge" in scep_server.log.read_text()


async def test_wrong_fingerprint_sends_nothing_but_get_ca_cert(
    scep_server: ScepServer, key: rsa.RSAPrivateKey
) -> None:
    before = scep_server.index_lines()
    challenge = Secret(scep_server.challenge)
    csr = build_scep_csr(key, cn_name(unique("room-pin")), challenge=challenge)
    for pin, shown in (("ab" * 32, "expected SHA-256 " + "ab" * 32),
                       ("cd" * 20, "expected SHA-1 " + "cd" * 20)):
        wire = Wire()
        async with wired_client(scep_server, wire, ca_fingerprint=pin) as client:
            with pytest.raises(ScepError) as caught:
                await client.enroll(csr, key, challenge=challenge)
        message = str(caught.value)
        assert "fingerprint mismatch" in message
        assert shown in message
        assert f"SHA-256 {scep_server.ca_sha256}" in message
        assert "Nothing was sent to the server but GetCACert" in message
        assert wire.seen == [("GET", "GetCACert")]
    assert scep_server.index_lines() == before


async def test_enroll_needs_a_fingerprint(
    scep_server: ScepServer, key: rsa.RSAPrivateKey
) -> None:
    wire = Wire()
    async with wired_client(scep_server, wire, ca_fingerprint=None) as client:
        with pytest.raises(ScepError, match="needs the CA fingerprint"):
            await client.enroll(build_scep_csr(key, cn_name("x")), key)
    assert wire.seen == []


async def test_unreachable_server() -> None:
    url = f"http://127.0.0.1:{closed_port()}/scep"
    async with ScepClient(url, ca_fingerprint="00" * 32, timeout=5) as client:
        with pytest.raises(ScepError, match=r"SCEP server .* unreachable: GetCACert"):
            await client.get_ca()


async def test_a_server_that_does_not_answer_times_out() -> None:
    with socket.socket() as silent:  # listens, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/scep"
        async with ScepClient(url, timeout=0.3) as client:
            with pytest.raises(ScepError, match=r"unreachable: GetCACaps timed out after 0.3 s"):
                await client.get_ca_caps()


async def test_http_errors_show_the_server_text(
    scep_server: ScepServer, key: rsa.RSAPrivateKey
) -> None:
    challenge = Secret(scep_server.challenge)
    csr = build_scep_csr(key, cn_name(unique("room-500")), challenge=challenge)
    wire = Wire(request_body=lambda body: b"\x30\x82\xff\xff garbage")
    async with wired_client(scep_server, wire) as client:
        with pytest.raises(ScepError, match=r"PKIOperation with HTTP 500 .*: ber2der"):
            await client.enroll(csr, key, challenge=challenge)
    async with ScepClient(scep_server.url + "-nope", ca_fingerprint=scep_server.ca_sha256) as c:
        with pytest.raises(ScepError, match="GetCACert with HTTP 404"):
            await c.get_ca()


@pytest.mark.parametrize(("caps", "method", "digest", "cipher"), [
    (frozenset(), "GET", "sha1", "tripledes_3key"),
    (frozenset({"POSTPKIOperation"}), "POST", "sha1", "tripledes_3key"),
    (frozenset({"AES", "SHA-256"}), "GET", "sha256", "aes128_cbc"),
    (frozenset({"SCEPStandard"}), "POST", "sha256", "aes128_cbc"),
])
async def test_what_is_sent_follows_the_caps(
    scep_server: ScepServer, key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch,
    caps: frozenset[str], method: str, digest: str, cipher: str,
) -> None:
    """GET with standard base64 when POST is not offered, 3DES when AES is not, SHA-1 when
    SHA-256 is not: the real server takes each of them."""
    wire = Wire()
    challenge = Secret(scep_server.challenge)
    async with wired_client(scep_server, wire) as client:
        async def fake_caps() -> frozenset[str]:
            return caps
        monkeypatch.setattr(client, "get_ca_caps", fake_caps)
        result = await client.enroll(build_scep_csr(key, cn_name(unique("room-caps")),
                                                    challenge=challenge),
                                     key, challenge=challenge)
    assert result.cert.public_key() == key.public_key()
    assert (method, "PKIOperation") in wire.seen
    signed_data = cms.ContentInfo.load(wire.messages[0])["content"]
    assert signed_data["digest_algorithms"][0]["algorithm"].native == digest
    envelope = cms.ContentInfo.load(signed_data["encap_content_info"]["content"].native)
    algorithm = envelope["content"]["encrypted_content_info"]["content_encryption_algorithm"]
    assert algorithm["algorithm"].native == cipher


async def test_concurrent_enrollments_are_serialised(
    scep_server: ScepServer, key: rsa.RSAPrivateKey
) -> None:
    """scepserver 2.1.0 hands out duplicate serials to simultaneous requests; the client's
    per-server lock must keep them apart, across tasks and across event loops in threads."""
    challenge = Secret(scep_server.challenge)
    before = issued_serials(scep_server)

    async def one(client: ScepClient, cn: str) -> int:
        csr = build_scep_csr(key, cn_name(cn), challenge=challenge)
        return (await client.enroll(csr, key, challenge=challenge)).cert.serial_number

    async def batch(prefix: str, count: int) -> list[int]:
        # one client per loop (an httpx client belongs to one loop); its enroll() calls race
        async with ScepClient(scep_server.url, ca_fingerprint=scep_server.ca_sha256) as c:
            return list(await asyncio.gather(*(one(c, f"{prefix}-{i}") for i in range(count))))

    here, there = await asyncio.gather(
        batch(unique("room-many"), 8),
        asyncio.to_thread(lambda: asyncio.run(batch(unique("room-thread"), 4))),
    )
    serials = here + there
    assert len(set(serials)) == 12
    after = issued_serials(scep_server)
    assert after[:len(before)] == before
    assert sorted(after[len(before):]) == sorted(serials)


async def test_serialised_holds_across_tasks_and_loops() -> None:
    inside = 0
    peak = 0
    guard = threading.Lock()

    async def hold() -> None:
        nonlocal inside, peak
        async with scep_lock._serialised("http://lock.test:80"):
            with guard:
                inside += 1
                peak = max(peak, inside)
            await asyncio.sleep(0.002)
            with guard:
                inside -= 1

    async def many() -> None:
        await asyncio.gather(*(hold() for _ in range(10)))

    await asyncio.gather(many(), asyncio.to_thread(lambda: asyncio.run(many())))
    assert peak == 1


# ------------------------------------------------------------------------------ signer


async def test_scep_signer_end_to_end(scep_server: ScepServer, key: rsa.RSAPrivateKey) -> None:
    device = Device(name="room-1", host="127.0.0.1")
    cn = unique("room-1")
    rendered = RenderedCertificate(subject=(("O", "Example Corp"), ("CN", cn)),
                                   san_dns=(f"{cn}.example.test",), san_ip=("127.0.0.1",))
    csr = build_csr(key, rendered)  # certfleet's CSR: no challenge in it
    with pytest.raises(x509.AttributeNotFound):
        csr.attributes.get_attribute_for_oid(AttributeOID.CHALLENGE_PASSWORD)
    asked: list[str] = []

    def challenge_for(dev: Device) -> Secret:
        asked.append(dev.name)
        return Secret(scep_server.challenge)

    ca_cert = x509.load_pem_x509_certificate(scep_server.ca_pem.read_bytes())
    for challenge in (Secret(scep_server.challenge), challenge_for):
        signer = ScepSigner(scep_server.url, ca_fingerprint=scep_server.ca_sha256,
                            challenge=challenge)
        assert signer.name == "scep"
        signed = await signer.sign(SigningRequest(device=device, csr=csr, key=key))
        assert signed.cert.subject == csr.subject
        assert signed.cert.public_key() == key.public_key()
        assert signed.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName) \
            .value == csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert signed.chain == (ca_cert,)
    assert asked == ["room-1"]


async def test_scep_signer_failure_names_the_device(
    scep_server: ScepServer, key: rsa.RSAPrivateKey
) -> None:
    wrong = "wrong-" + secrets.token_urlsafe(12)
    device = Device(name="room-2", host="127.0.0.1")
    csr = build_csr(key, RenderedCertificate(subject=(("CN", unique("room-2")),)))
    signer = ScepSigner(scep_server.url, ca_fingerprint=scep_server.ca_sha256,
                        challenge=Secret(wrong))
    with pytest.raises(ScepError) as caught:
        await signer.sign(SigningRequest(device=device, csr=csr, key=key))
    assert caught.value.device == "room-2"
    assert caught.value.fail_info == "badRequest"
    assert str(caught.value).startswith("room-2: SCEP server ")
    assert wrong not in str(caught.value)


async def test_scep_signer_refuses_an_ec_key() -> None:
    """Refused before anything is sent: the URL is a closed port, yet the error is not
    'unreachable'."""
    ec_key = ec.generate_private_key(ec.SECP256R1())
    csr = build_csr(ec_key, RenderedCertificate(subject=(("CN", "room-3"),)))
    signer = ScepSigner(f"http://127.0.0.1:{closed_port()}/scep", ca_fingerprint="00" * 32,
                        challenge=Secret("challenge-ec-test"))
    with pytest.raises(SignerError) as caught:
        await signer.sign(SigningRequest(device=Device(name="room-3"), csr=csr, key=ec_key))
    assert type(caught.value) is SignerError
    assert caught.value.device == "room-3"
    assert "RSA key" in str(caught.value) and "EC secp256r1" in str(caught.value)


# ---------------------------------------------------------------- unit: CSR and inputs


def test_build_scep_csr_and_csr_with_challenge(key: rsa.RSAPrivateKey) -> None:
    san: list[x509.GeneralName] = [x509.DNSName("a.example.test")]
    plain = build_scep_csr(key, x509.Name([]), san=san)
    ext = plain.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert ext.critical  # empty subject: SAN must be critical
    with pytest.raises(x509.AttributeNotFound):
        plain.attributes.get_attribute_for_oid(AttributeOID.CHALLENGE_PASSWORD)

    first = csr_with_challenge(plain, key, Secret("first-challenge"))
    second = csr_with_challenge(first, key, Secret("second-challenge"))
    for csr, value in ((first, b"first-challenge"), (second, b"second-challenge")):
        assert csr.is_signature_valid
        assert csr.subject == plain.subject
        assert list(csr.extensions) == list(plain.extensions)
        assert csr.attributes.get_attribute_for_oid(AttributeOID.CHALLENGE_PASSWORD).value \
            == value
        assert isinstance(csr.signature_hash_algorithm, hashes.SHA256)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(ValueError, match="public key"):
        csr_with_challenge(plain, other, Secret("x-challenge"))


async def test_enroll_checks_its_inputs_before_sending(key: rsa.RSAPrivateKey) -> None:
    secret = "input-check-" + secrets.token_hex(4)
    url = f"http://127.0.0.1:{closed_port()}/scep"
    async with ScepClient(url, ca_fingerprint="00" * 32) as client:
        plain = build_scep_csr(key, cn_name("room-in"))
        with pytest.raises(ValueError, match="no challengePassword"):
            await client.enroll(plain, key, challenge=Secret(secret))
        other = build_scep_csr(key, cn_name("room-in"), challenge=Secret(secret + "-other"))
        with pytest.raises(ValueError, match="not the challenge given") as caught:
            await client.enroll(other, key, challenge=Secret(secret))
        assert secret not in str(caught.value)
        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        with pytest.raises(ValueError, match="public key"):
            await client.enroll(plain, stranger)


# ------------------------------------------------------ unit: BER walker, DES, envelopes


def tlv(tag: int, content: bytes, *, indefinite: bool = False) -> bytes:
    if indefinite:
        return bytes([tag, 0x80]) + content + b"\x00\x00"
    if len(content) < 0x80:
        return bytes([tag, len(content)]) + content
    size = len(content).to_bytes((len(content).bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def des_cbc(key8: bytes, iv: bytes, data: bytes) -> bytes:
    padder = sym_padding.PKCS7(64).padder()
    encryptor = Cipher(TripleDES(key8 * 3), modes.CBC(iv)).encryptor()
    return encryptor.update(padder.update(data) + padder.finalize()) + encryptor.finalize()


def handmade_envelope(cert: x509.Certificate, plaintext: bytes, *, indefinite: bool) -> bytes:
    """ContentInfo(EnvelopedData) as scepserver writes it: single DES-CBC, and the
    encryptedContent a *constructed* [0] of OCTET STRING segments (two here)."""
    cek, iv = secrets.token_bytes(8), secrets.token_bytes(8)
    encrypted = des_cbc(cek, iv, plaintext)
    public = cert.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    recipient_infos = cms.RecipientInfos([cms.RecipientInfo({"ktri": {
        "version": "v0",
        "rid": {"issuer_and_serial_number": scep_envelope._issuer_and_serial(cert)},
        "key_encryption_algorithm": {"algorithm": "rsaes_pkcs1v15"},
        "encrypted_key": public.encrypt(cek, padding.PKCS1v15()),
    }})]).dump()
    algorithm = cms.EncryptionAlgorithm({"algorithm": "des",
                                         "parameters": core.OctetString(iv)}).dump()
    half = len(encrypted) // 2
    encrypted_content = tlv(0xA0, tlv(0x04, encrypted[:half]) + tlv(0x04, encrypted[half:]),
                            indefinite=indefinite)
    eci = tlv(0x30, core.ObjectIdentifier("1.2.840.113549.1.7.1").dump() + algorithm
              + encrypted_content, indefinite=indefinite)
    enveloped = tlv(0x30, core.Integer(0).dump() + recipient_infos + eci, indefinite=indefinite)
    return tlv(0x30, core.ObjectIdentifier("1.2.840.113549.1.7.3").dump()
               + tlv(0xA0, enveloped, indefinite=indefinite), indefinite=indefinite)


@pytest.mark.parametrize("indefinite", [False, True])
def test_ber_walker_and_des_decrypt_on_handmade_bytes(
    key: rsa.RSAPrivateKey, indefinite: bool
) -> None:
    cert = self_signed(key, "walker")
    plaintext = b"degenerate PKCS#7 stands in here " * 9
    data = handmade_envelope(cert, plaintext, indefinite=indefinite)

    top = read_tlv(data)
    assert (top.tag, top.constructed, top.end) == (0x30, True, len(data))
    assert [c.tag for c in tlv_children(data, top)] == [0x06, 0xA0]
    parts = split_enveloped_data(data)
    assert cms.EncryptionAlgorithm.load(parts.algorithm)["algorithm"].native == "des"
    assert len(parts.encrypted) % 8 == 0
    assert decrypt_enveloped(data, key, cert) == plaintext
    assert decrypt_enveloped(data, key) == plaintext  # without naming the recipient

    stranger = self_signed(rsa.generate_private_key(public_exponent=65537, key_size=2048), "x")
    with pytest.raises(ValueError, match="not addressed to our certificate"):
        decrypt_enveloped(data, key, stranger)
    with pytest.raises(ValueError, match="truncated"):
        split_enveloped_data(data[:-3])


def test_tlv_edge_cases() -> None:
    # a constructed OCTET STRING nested twice, long-form length
    inner = tlv(0x24, tlv(0x04, b"ab") + tlv(0x04, b"c" * 200))
    outer = tlv(0xA0, inner + tlv(0x04, b"d"))
    assert octet_string_value(outer, read_tlv(outer)) == b"ab" + b"c" * 200 + b"d"
    with pytest.raises(ValueError, match="holds tag 0x02"):
        bad = tlv(0xA0, tlv(0x02, b"\x01"))
        octet_string_value(bad, read_tlv(bad))
    with pytest.raises(ValueError, match="indefinite length on a primitive"):
        read_tlv(b"\x04\x80\x00\x00")
    with pytest.raises(ValueError, match="truncated"):
        read_tlv(b"\x30\x05\x04\x01")
    with pytest.raises(ValueError, match="no end-of-contents"):
        read_tlv(b"\x30\x80\x04\x01a")
    with pytest.raises(ValueError, match="too deep"):
        deep = b"\x30\x80" * 40 + b"\x00\x00" * 40
        read_tlv(deep)


def test_decrypt_content_ciphers() -> None:
    key8, iv = b"8bytekey", b"initvect"
    assert decrypt_content("des", key8, iv, des_cbc(key8, iv, b"hello")) == b"hello"
    key24 = secrets.token_bytes(24)
    padder = sym_padding.PKCS7(64).padder()
    enc = Cipher(TripleDES(key24), modes.CBC(iv)).encryptor()
    blob = enc.update(padder.update(b"three") + padder.finalize()) + enc.finalize()
    assert decrypt_content("tripledes_3key", key24, iv, blob) == b"three"
    with pytest.raises(ValueError, match="8 bytes"):
        decrypt_content("des", key24, iv, blob)
    with pytest.raises(ValueError, match="IV"):
        decrypt_content("tripledes_3key", key24, iv + b"x", blob)
    with pytest.raises(ValueError, match="whole number of blocks"):
        decrypt_content("tripledes_3key", key24, iv, blob[:-1])
    with pytest.raises(ValueError, match="not supported"):
        decrypt_content("rc2", key8, iv, blob)


@pytest.mark.parametrize("cipher", ["tripledes_3key", "aes128_cbc"])
def test_request_envelopes_decrypt_with_openssl_and_with_ours(
    key: rsa.RSAPrivateKey, tmp_path: Path, cipher: str
) -> None:
    cert = self_signed(key, "recipient")
    data = b"\x30\x0a a CSR would be here \n\r\n" * 5
    envelope = scep_envelope._envelope(data, cert, cipher)
    assert decrypt_enveloped(envelope, key, cert) == data
    (tmp_path / "env.der").write_bytes(envelope)
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    result = subprocess.run(
        [openssl(), "cms", "-decrypt", "-binary", "-inform", "DER", "-in", "env.der",
         "-recip", "cert.pem", "-inkey", "key.pem"],
        cwd=tmp_path, capture_output=True, check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == data


def test_pki_message_is_a_verifiable_pkcsreq(key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_cert = self_signed(ca_key, "Unit CA", ca=True)
    info = CaInfo(certs=(ca_cert,), caps=frozenset({"SCEPStandard"}), recipient=ca_cert,
                  ca=ca_cert)
    csr = build_scep_csr(key, cn_name("room-unit"), challenge=Secret("unit-challenge"))
    request = scep_message._build_pki_message(csr, key, info)

    signed_data = cms.ContentInfo.load(request.message)["content"]
    signer_info = signed_data["signer_infos"][0]
    attrs = signer_info["signed_attrs"]
    # the signature covers the attributes with the SET OF tag
    signed_bytes = b"\x31" + attrs.dump()[1:]
    key.public_key().verify(signer_info["signature"].native, signed_bytes, padding.PKCS1v15(),
                            hashes.SHA256())
    values = {a["type"].dotted: a["values"][0] for a in attrs}
    assert values[scep.OID_MESSAGE_TYPE].dump()[:1] == b"\x13"  # PrintableString
    assert values[scep.OID_MESSAGE_TYPE].native == "19"
    assert values[scep.OID_TRANSACTION_ID].dump()[:1] == b"\x13"
    assert values[scep.OID_TRANSACTION_ID].native == request.transaction_id
    assert values[scep.OID_SENDER_NONCE].dump()[:1] == b"\x04"
    assert values[scep.OID_SENDER_NONCE].native == request.nonce
    assert len(request.nonce) == 16
    envelope = signed_data["encap_content_info"]["content"].native
    assert values["1.2.840.113549.1.9.4"].native == hashlib.sha256(envelope).digest()
    assert values["1.2.840.113549.1.9.3"].native == "data"
    # the envelope holds the CSR, for the CA's key
    assert decrypt_enveloped(envelope, ca_key, ca_cert) == csr.public_bytes(
        serialization.Encoding.DER)
    # the signer certificate is included and carries the CSR's key
    included = [x509.load_der_x509_certificate(c.chosen.dump())
                for c in signed_data["certificates"]]
    assert included == [request.signer]
    assert request.signer.public_key() == key.public_key()

    # and OpenSSL agrees the signature is good
    (tmp_path / "req.der").write_bytes(request.message)
    result = subprocess.run([openssl(), "cms", "-verify", "-noverify", "-binary", "-inform",
                             "DER", "-in", "req.der", "-out", "content.der"],
                            cwd=tmp_path, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "content.der").read_bytes() == envelope


# ----------------------------------------------- unit: CertRep checks and GetCACert shapes


def _attr(oid: str, value: object) -> cms.CMSAttribute:
    return cms.CMSAttribute({"type": oid, "values": [value]})


def make_cert_rep(
    signer_key: rsa.RSAPrivateKey,
    signer_cert: x509.Certificate,
    request: scep_message._Request,
    *,
    status: str,
    fail_info: str | None = None,
    content: bytes | None = None,
    nonce: bytes | None = None,
    message_type: str = "3",
    transaction_id: str | None = None,
) -> bytes:
    """A CertRep the way scepserver builds one (SHA-1, sha1WithRSA), from our own 'CA'."""
    attrs = [
        _attr("1.2.840.113549.1.9.3", cms.ContentType("data")),
        _attr("1.2.840.113549.1.9.4", core.OctetString(hashlib.sha1(content or b"").digest())),
        _attr(scep.OID_MESSAGE_TYPE, core.PrintableString(message_type)),
        _attr(scep.OID_PKI_STATUS, core.PrintableString(status)),
        _attr(scep.OID_TRANSACTION_ID,
              core.PrintableString(transaction_id or request.transaction_id)),
        _attr(scep.OID_RECIPIENT_NONCE, core.OctetString(nonce or request.nonce)),
        _attr(scep.OID_SENDER_NONCE, core.OctetString(secrets.token_bytes(16))),
    ]
    if fail_info is not None:
        attrs.append(_attr(scep.OID_FAIL_INFO, core.PrintableString(fail_info)))
    signed_attrs = cms.CMSAttributes(attrs)
    signature = signer_key.sign(signed_attrs.dump(), padding.PKCS1v15(), hashes.SHA1())
    signer_info = cms.SignerInfo({
        "version": "v1",
        "sid": {"issuer_and_serial_number": scep_envelope._issuer_and_serial(signer_cert)},
        "digest_algorithm": {"algorithm": "sha1"},
        "signed_attrs": signed_attrs,
        "signature_algorithm": {"algorithm": "sha1_rsa"},
        "signature": signature,
    })
    encap: dict[str, object] = {"content_type": "data"}
    if content is not None:
        encap["content"] = content
    signed_data = cms.SignedData({
        "version": "v1",
        "digest_algorithms": [{"algorithm": "sha1"}],
        "encap_content_info": encap,
        "certificates": [cms.CertificateChoices.load(der(signer_cert))],
        "signer_infos": [signer_info],
    })
    out: bytes = cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump()
    return out


class UnitCa:
    def __init__(self, cn: str = "Unit CA") -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.cert = self_signed(self.key, cn, ca=True)
        self.info = CaInfo(certs=(self.cert,), caps=frozenset({"SCEPStandard"}),
                           recipient=self.cert, ca=self.cert)

    def issue(self, key: rsa.RSAPrivateKey, cn: str) -> x509.Certificate:
        now = datetime.now(UTC)
        return (x509.CertificateBuilder().subject_name(cn_name(cn))
                .issuer_name(self.cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now)
                .not_valid_after(now + timedelta(days=1)).sign(self.key, hashes.SHA256()))


@pytest.fixture(scope="module")
def unit_ca() -> UnitCa:
    return UnitCa()


def test_cert_rep_success_read_offline(unit_ca: UnitCa, key: rsa.RSAPrivateKey) -> None:
    """SUCCESS with single DES and a BER-constructed encryptedContent, as scepserver sends."""
    from cryptography.hazmat.primitives.serialization import pkcs7

    request = scep_message._build_pki_message(build_scep_csr(key, cn_name("room-off")), key,
                                      unit_ca.info)
    issued = unit_ca.issue(key, "room-off")
    degenerate = pkcs7.serialize_certificates([issued], serialization.Encoding.DER)
    envelope = handmade_envelope(request.signer, degenerate, indefinite=False)
    reply = make_cert_rep(unit_ca.key, unit_ca.cert, request, status="0", content=envelope)
    cert, chain = scep_reply._read_cert_rep(reply, request, unit_ca.info, key)
    assert cert == issued
    assert chain == (unit_ca.cert,)

    other_ca = UnitCa("Other CA")
    stray = other_ca.issue(key, "room-off")
    envelope = handmade_envelope(
        request.signer, pkcs7.serialize_certificates([stray], serialization.Encoding.DER),
        indefinite=True)
    reply = make_cert_rep(unit_ca.key, unit_ca.cert, request, status="0", content=envelope)
    with pytest.raises(ScepError, match="is not the SCEP CA"):
        scep_reply._read_cert_rep(reply, request, unit_ca.info, key)


@pytest.mark.parametrize(("changes", "expected", "fail_info"), [
    ({"status": "3"}, r"pending .*polling is not supported", None),
    ({"status": "2", "fail_info": "0"}, "FAILURE badAlg", "badAlg"),
    ({"status": "2", "fail_info": "1"}, "FAILURE badMessageCheck", "badMessageCheck"),
    ({"status": "2", "fail_info": "3"}, "FAILURE badTime", "badTime"),
    ({"status": "2", "fail_info": "4"}, "FAILURE badCertId", "badCertId"),
    ({"status": "2"}, "FAILURE no failInfo", None),
    ({"status": "9"}, "unknown pkiStatus", None),
    ({"status": "0", "nonce": b"n" * 16}, "recipientNonce", None),
    ({"status": "0", "message_type": "19"}, "messageType 19", None),
    ({"status": "0", "transaction_id": "someone-else"}, "transactionID", None),
    ({"status": "0"}, "SUCCESS but carries no content", None),
])
def test_cert_rep_checks(unit_ca: UnitCa, key: rsa.RSAPrivateKey,
                         changes: dict[str, object], expected: str,
                         fail_info: str | None) -> None:
    request = scep_message._build_pki_message(build_scep_csr(key, cn_name("room-st")), key,
                                      unit_ca.info)
    reply = make_cert_rep(unit_ca.key, unit_ca.cert, request, **changes)  # type: ignore[arg-type]
    with pytest.raises(ScepError, match=expected) as caught:
        scep_reply._read_cert_rep(reply, request, unit_ca.info, key)
    assert caught.value.fail_info == fail_info


def test_cert_rep_from_a_stranger_is_refused(unit_ca: UnitCa, key: rsa.RSAPrivateKey) -> None:
    request = scep_message._build_pki_message(build_scep_csr(key, cn_name("room-x")), key,
                                      unit_ca.info)
    impostor = UnitCa("Unit CA")  # same name, other key
    reply = make_cert_rep(impostor.key, impostor.cert, request, status="2", fail_info="2")
    with pytest.raises(ScepError, match="not signed by the CA"):
        scep_reply._read_cert_rep(reply, request, unit_ca.info, key)


async def test_get_ca_with_an_ra_certificate() -> None:
    """x509-ca-ra-cert: the RA (keyEncipherment, issued by the CA) is the recipient; pinning
    the CA or the RA works, pinning anything else in the bundle does not."""
    from cryptography.hazmat.primitives.serialization import pkcs7

    ca = UnitCa("RA test CA")
    ra_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.now(UTC)
    ra = (x509.CertificateBuilder().subject_name(cn_name("RA")).issuer_name(ca.cert.subject)
          .public_key(ra_key.public_key()).serial_number(7).not_valid_before(now)
          .not_valid_after(now + timedelta(days=1))
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                       key_encipherment=True, data_encipherment=False,
                                       key_agreement=False, key_cert_sign=False,
                                       crl_sign=False, encipher_only=False,
                                       decipher_only=False), critical=True)
          .sign(ca.key, hashes.SHA256()))
    stray = self_signed(rsa.generate_private_key(public_exponent=65537, key_size=2048), "x")
    bundle = pkcs7.serialize_certificates([ra, ca.cert, stray], serialization.Encoding.DER)

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.params["operation"] == "GetCACert":
            return httpx.Response(200, content=bundle,
                                  headers={"Content-Type": "application/x-x509-ca-ra-cert"})
        return httpx.Response(200, text="POSTPKIOperation\nSHA-256\nAES\n")

    def client(pin: str) -> ScepClient:
        http = httpx.AsyncClient(transport=httpx.MockTransport(answer))
        return ScepClient("http://scep.test/scep", ca_fingerprint=pin, client=http)

    for pinned in (ca.cert, ra):
        async with client(hashlib.sha256(der(pinned)).hexdigest()) as c:
            info = await c.get_ca()
        assert info.ca == ca.cert
        assert info.recipient == ra
        assert info.caps == {"POSTPKIOperation", "SHA-256", "AES"}
    async with client(hashlib.sha256(der(stray)).hexdigest()) as c:
        with pytest.raises(ScepError, match="neither the CA that issues"):
            await c.get_ca()
