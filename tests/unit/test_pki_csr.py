"""Tests for fleet.pki.csr: CSRs from rendered templates, checked by OpenSSL itself."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from debian_packages import openssl

from certfleet.fleet.errors import InputError, PemError
from certfleet.fleet.inventory import CertificateTemplate, Device, RenderedCertificate
from certfleet.fleet.pki.csr import build_csr, csr_pem, load_csr_pem, san_strings
from certfleet.fleet.pki.keys import (
    KEY_KINDS,
    KeyFactory,
    PrivateKey,
    generate_key,
    same_public_key,
)


@pytest.fixture(scope="module")
def keys() -> dict[str, PrivateKey]:
    async def make() -> list[PrivateKey]:
        async with KeyFactory() as factory:
            return await asyncio.gather(*(factory.generate(kind) for kind in KEY_KINDS))

    return dict(zip(KEY_KINDS, asyncio.run(make()), strict=True))


def _rendered(**changes: object) -> RenderedCertificate:
    base: dict[str, object] = {
        "subject": (("C", "NO"), ("ST", "Vestland"), ("L", "Bergen"), ("O", "Example"),
                    ("OU", "Rooms"), ("CN", "room-1")),
        "san_dns": ("room-1.rooms.example.com",),
        "san_ip": ("10.0.0.7", "2001:db8::7"),
        "san_email": ("rooms@example.com",),
        "san_uri": ("sip:room-1@example.com",),
    }
    base.update(changes)
    return RenderedCertificate(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", KEY_KINDS)
def test_openssl_accepts_every_kind(kind: str, keys: dict[str, PrivateKey],
                                    tmp_path: Path) -> None:
    csr = build_csr(keys[kind], _rendered())
    path = tmp_path / f"{kind}.csr.pem"
    path.write_bytes(csr_pem(csr))
    result = subprocess.run([openssl(), "req", "-verify", "-noout", "-in", str(path)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "verify OK" in (result.stdout + result.stderr)
    assert csr.is_signature_valid
    assert same_public_key(csr, keys[kind])


def test_subject_order_sans_and_hash(keys: dict[str, PrivateKey]) -> None:
    # given out of order: the CSR still has C, ST, L, O, OU, CN
    rendered = _rendered(subject=(("CN", "room-1"), ("O", "Example"), ("C", "no")))
    csr = build_csr(keys["ec-p256"], rendered)
    assert [a.oid for a in csr.subject] == [
        NameOID.COUNTRY_NAME, NameOID.ORGANIZATION_NAME, NameOID.COMMON_NAME
    ]
    assert csr.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value == "NO"
    full = build_csr(keys["ec-p256"], _rendered())
    assert [a.oid for a in full.subject] == [
        NameOID.COUNTRY_NAME, NameOID.STATE_OR_PROVINCE_NAME, NameOID.LOCALITY_NAME,
        NameOID.ORGANIZATION_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME, NameOID.COMMON_NAME,
    ]
    assert isinstance(full.signature_hash_algorithm, hashes.SHA256)
    san = full.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert not san.critical
    assert san.value.get_values_for_type(x509.DNSName) == ["room-1.rooms.example.com"]
    assert san.value.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.0.0.7"), ipaddress.ip_address("2001:db8::7")
    ]
    assert san.value.get_values_for_type(x509.RFC822Name) == ["rooms@example.com"]
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [
        "sip:room-1@example.com"
    ]
    assert san_strings(full) == [
        "DNS:room-1.rooms.example.com", "IP:10.0.0.7", "IP:2001:db8::7",
        "email:rooms@example.com", "URI:sip:room-1@example.com",
    ]


def test_no_challenge_password_and_no_san_when_none(keys: dict[str, PrivateKey]) -> None:
    csr = build_csr(keys["ec-p256"], RenderedCertificate(subject=(("CN", "room-1"),)))
    assert list(csr.attributes) == []
    assert len(csr.extensions) == 0
    assert san_strings(csr) == []


@pytest.mark.parametrize("country", ["NOR", "N", "1X", "Ø1"])
def test_country_must_be_two_letters(keys: dict[str, PrivateKey], country: str) -> None:
    rendered = _rendered(subject=(("C", country), ("CN", "room-1")))
    with pytest.raises(InputError, match="two-letter country code"):
        build_csr(keys["ec-p256"], rendered)


def test_from_an_inventory_template(keys: dict[str, PrivateKey]) -> None:
    template = CertificateTemplate(
        key="ec-p256", subject={"C": "no", "O": "Example", "CN": "{name}"},
        san_dns=("{host}",), san_ip=(),
    )
    device = Device(name="oslo-board-1", host="board-1.oslo.example.com", certificate=template)
    csr = build_csr(keys["ec-p256"], template.render(device))
    assert csr.subject.rfc4514_string() == "CN=oslo-board-1,O=Example,C=NO"
    assert san_strings(csr) == ["DNS:board-1.oslo.example.com"]


def test_load_csr_pem(keys: dict[str, PrivateKey]) -> None:
    csr = build_csr(keys["ec-p256"], _rendered())
    assert load_csr_pem(csr_pem(csr), source="a.csr") == csr
    with pytest.raises(PemError, match=r"x\.pem: is not a CSR"):
        load_csr_pem(b"nothing", source="x.pem")
    tampered = bytearray(csr.public_bytes(serialization.Encoding.DER))
    tampered[-3] ^= 0x01  # in the signature
    pem = (b"-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(bytes(tampered))
           + b"-----END CERTIFICATE REQUEST-----\n")
    with pytest.raises(PemError, match=r"signature does not verify|does not decode"):
        load_csr_pem(pem, source="t.pem")


def test_generate_key_then_csr_in_one_process() -> None:
    key = generate_key("ec-p256")
    assert build_csr(key, _rendered()).is_signature_valid
