"""Tests for fleet.pki.bundle: bundles in any order come out leaf first; bad bundles are named."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certfleet.fleet.errors import PemError
from certfleet.fleet.pki.bundle import Bundle, bundle_pem, order_chain, parse_bundle
from certfleet.fleet.pki.keys import generate_key, key_to_pem, same_public_key
from certfleet.fleet.secrets import Secret

NOW = dt.datetime.now(dt.UTC)
PASSPHRASE = "bundle-test-passphrase-71ab"


def make(
    cn: str,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
    *,
    ca: bool = False,
    with_ids: bool = True,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    issuer_name, signer = (issuer[0].subject, issuer[1]) if issuer else (name, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=90))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if with_ids:
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
        if issuer:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()),
                critical=False,
            )
    return builder.sign(signer, hashes.SHA256()), key


ROOT = make("Root", ca=True)
INTER = make("Intermediate", ROOT, ca=True)
LEAF = make("room-1", INTER)


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def test_every_order_comes_out_leaf_first() -> None:
    certs = [LEAF[0], INTER[0], ROOT[0]]
    for order in itertools.permutations(certs):
        bundle = parse_bundle(pem(*order), source="b.pem")
        assert bundle.leaf == LEAF[0]
        assert bundle.chain == (INTER[0], ROOT[0])
        assert bundle.key is None
        assert bundle.certificates == (LEAF[0], INTER[0], ROOT[0])


def test_misordered_bundle_is_reordered_without_key_identifiers() -> None:
    root = make("Old Root", ca=True, with_ids=False)
    inter = make("Old Intermediate", root, ca=True, with_ids=False)
    leaf = make("room-9", inter, with_ids=False)
    bundle = parse_bundle(pem(root[0], leaf[0], inter[0]), source="old.pem")
    assert [c.subject.rfc4514_string() for c in bundle.certificates] == [
        "CN=room-9", "CN=Old Intermediate", "CN=Old Root"
    ]


def test_same_name_cas_are_told_apart_by_signature() -> None:
    root = make("Root B", ca=True, with_ids=False)
    right = make("Intermediate", root, ca=True, with_ids=False)
    wrong = make("Intermediate", root, ca=True, with_ids=False)  # same name, another key
    leaf = make("room-2", right, with_ids=False)
    ordered = order_chain([root[0], leaf[0], right[0]], source="x.pem")
    assert ordered == [leaf[0], right[0], root[0]]
    with pytest.raises(PemError, match="chain is broken"):
        order_chain([leaf[0], wrong[0]], source="x.pem")


def test_stray_ca_is_a_broken_chain() -> None:
    stray = make("Unrelated CA", ca=True)
    with pytest.raises(PemError) as info:
        parse_bundle(pem(LEAF[0], stray[0]), source="certs/room-1.pem")
    message = str(info.value)
    assert message.startswith("certs/room-1.pem: ")
    assert "chain is broken" in message and "'/CN=Unrelated CA'" in message
    assert "needs '/CN=Intermediate'" in message


def test_two_leaves_is_an_error_naming_the_file() -> None:
    other = make("room-2", INTER)
    with pytest.raises(PemError) as info:
        parse_bundle(pem(LEAF[0], INTER[0], other[0]), source="certs/two.pem")
    message = str(info.value)
    assert message.startswith("certs/two.pem: ")
    assert "2 unrelated leaf certificates" in message
    assert "'/CN=room-1'" in message and "'/CN=room-2'" in message


def test_duplicates_are_dropped() -> None:
    bundle = parse_bundle(pem(INTER[0], LEAF[0], INTER[0], LEAF[0]), source="d.pem")
    assert bundle.certificates == (LEAF[0], INTER[0])


def test_single_certificate() -> None:
    assert parse_bundle(pem(LEAF[0]), source="s.pem") == Bundle(leaf=LEAF[0])


def test_bundle_with_its_key_plain_and_encrypted() -> None:
    key = generate_key("ec-p256")
    leaf = make("room-3", INTER)
    # rebuild the leaf for `key`
    cert = (
        x509.CertificateBuilder()
        .subject_name(leaf[0].subject)
        .issuer_name(INTER[0].subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=9))
        .sign(INTER[1], hashes.SHA256())
    )
    plain = pem(INTER[0]) + key_to_pem(key, None) + pem(cert)
    bundle = parse_bundle(plain, source="k.pem")
    assert bundle.leaf == cert and bundle.key is not None
    assert same_public_key(bundle.key, key)
    locked = pem(cert, INTER[0]) + key_to_pem(key, Secret(PASSPHRASE))
    with pytest.raises(PemError, match="encrypted; give its passphrase"):
        parse_bundle(locked, source="k.pem")
    with pytest.raises(PemError, match=r"k\.pem: the private key cannot be decrypted: wrong"):
        parse_bundle(locked, source="k.pem", passphrase=Secret("wrong-passphrase-2291"))
    assert parse_bundle(locked, source="k.pem", passphrase=Secret(PASSPHRASE)).key is not None


def test_not_a_bundle() -> None:
    with pytest.raises(PemError, match=r"x\.pem: is not a PEM file"):
        parse_bundle(b"garbage", source="x.pem")


def test_bundle_pem_is_leaf_then_chain_then_key() -> None:
    key_pem = key_to_pem(generate_key("ec-p256"), None)
    text = bundle_pem(LEAF[0], [INTER[0]], key_pem)
    blocks = [line for line in text.splitlines() if line.startswith("-----BEGIN")]
    assert blocks == ["-----BEGIN CERTIFICATE-----", "-----BEGIN CERTIFICATE-----",
                      "-----BEGIN PRIVATE KEY-----"]
    certs = x509.load_pem_x509_certificates(text.encode())
    assert certs == [LEAF[0], INTER[0]]
    assert text.endswith("-----END PRIVATE KEY-----\n")
    # round trip
    again = parse_bundle(text.encode(), source="round.pem")
    assert again.leaf == LEAF[0] and again.chain == (INTER[0],) and again.key is not None
    assert bundle_pem(LEAF[0]) == pem(LEAF[0]).decode()
    assert bundle_pem(LEAF[0], [LEAF[0], INTER[0]], key_pem.decode()).count("CERTIFICATE-----") == 4
