"""roomsim's simulated SCEP responder, driven by certfleet's own SCEP client over real HTTP on
loopback: it must check what it is sent (challenge, CSR signature) and answer real CertReps
that the client verifies (signature by the CA, nonces, encrypted content)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from certfleet.fleet.errors import ScepError
from certfleet.fleet.pki.scep import ScepClient, build_scep_csr
from certfleet.fleet.secrets import Secret
from certfleet.roomsim.scep_responder import SimScepResponder

CHALLENGE = "sim-scep-challenge-4711"


def _enroll(responder: SimScepResponder, challenge: str | None, cn: str = "room-001") -> x509.Certificate:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    secret = Secret(challenge) if challenge is not None else None
    csr = build_scep_csr(key, subject, san=[x509.DNSName(f"{cn}.example.com")], challenge=secret)

    async def go() -> x509.Certificate:
        async with ScepClient(responder.url, ca_fingerprint=responder.ca_sha256) as client:
            result = await client.enroll(csr, key, challenge=secret)
        return result.cert

    return asyncio.run(go())


def test_enrolls_with_the_right_challenge_and_the_client_verifies_the_reply() -> None:
    with SimScepResponder(challenge=CHALLENGE) as responder:
        assert responder.url.startswith("http://127.0.0.1:")
        cert = _enroll(responder, CHALLENGE)
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "room-001"
        assert cert.issuer == responder.ca.subject
        cert.verify_directly_issued_by(responder.ca)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == ["room-001.example.com"]
        assert responder.issued == [cert]


def test_a_wrong_or_missing_challenge_is_a_bad_request_failure() -> None:
    with SimScepResponder(challenge=CHALLENGE) as responder:
        with pytest.raises(ScepError) as wrong:
            _enroll(responder, "not-the-challenge")
        assert wrong.value.fail_info == "badRequest"
        with pytest.raises(ScepError) as missing:
            _enroll(responder, None)
        assert missing.value.fail_info == "badRequest"
        assert responder.issued == []


def test_garbage_is_refused_and_caps_say_what_it_speaks() -> None:
    with SimScepResponder() as responder:
        caps = httpx.get(responder.url, params={"operation": "GetCACaps"}, trust_env=False)
        assert {"POSTPKIOperation", "AES", "SHA-256"} <= set(caps.text.split())
        bad = httpx.post(responder.url, params={"operation": "PKIOperation"},
                         content=b"\x30\x03\x02\x01\x00", trust_env=False)
        assert bad.status_code == 400
        assert responder.issued == []


def test_listens_on_loopback_only() -> None:
    with pytest.raises(ValueError, match="loopback"):
        SimScepResponder(host="0.0.0.0")
