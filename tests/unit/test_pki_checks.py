"""Tests for fleet.pki.checks: every rule a certificate must pass before it is pushed, and the
message each failure gives (naming the device and the file, saying what is wrong)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certfleet.fleet.errors import CertificateCheckError, InputError
from certfleet.fleet.inventory import Device
from certfleet.fleet.pki.checks import (
    ChainProblem,
    check_for_device,
    host_matches,
    normalize_purposes,
    verify_issued_by,
)
from certfleet.fleet.pki.keys import generate_key

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
DAY = dt.timedelta(days=1)
SERVER = ExtendedKeyUsageOID.SERVER_AUTH
CLIENT = ExtendedKeyUsageOID.CLIENT_AUTH
HOST = "room-1.rooms.example.com"
DEVICE = Device(name="room-1", host=HOST)
FILE = "certs/room-1.pem"

_EC = ec.generate_private_key(ec.SECP256R1())
_EC2 = ec.generate_private_key(ec.SECP256R1())
_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_ED = ed25519.Ed25519PrivateKey.generate()


@dataclass
class Issued:
    cert: x509.Certificate
    key: CertificateIssuerPrivateKeyTypes


def _ku(**bits: bool) -> x509.KeyUsage:
    names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
             "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
    return x509.KeyUsage(**{name: bits.get(name, False) for name in names})


def make(
    cn: str,
    *,
    key: CertificateIssuerPrivateKeyTypes | None = None,
    issuer: Issued | None = None,
    ca: bool = False,
    path_length: int | None = None,
    start: dt.datetime = NOW - 30 * DAY,
    end: dt.datetime = NOW + 300 * DAY,
    dns: Sequence[str] = (HOST,),
    ips: Sequence[str] = (),
    eku: Sequence[x509.ObjectIdentifier] | None = (SERVER, CLIENT),
    ku: x509.KeyUsage | None = None,
    with_san: bool = True,
    with_aki: bool = True,
    pss: bool = False,
) -> Issued:
    key = key or generate_key("ec-p256")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    signer_key = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.cert.subject if issuer else name)
        .public_key(key.public_key())  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),  # type: ignore[arg-type]
                       critical=False)
    )
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=path_length),
                                        critical=True)
        builder = builder.add_extension(ku or _ku(key_cert_sign=True, crl_sign=True),
                                        critical=True)
    else:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                        critical=True)
        if ku is not None:
            builder = builder.add_extension(ku, critical=True)
        if eku is not None:
            builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
        if with_san:
            names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
            names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if issuer is not None and with_aki:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    algorithm = None if isinstance(signer_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    if pss:
        cert = builder.sign(signer_key, algorithm,  # type: ignore[arg-type]
                            rsa_padding=padding.PSS(padding.MGF1(hashes.SHA256()),
                                                    padding.PSS.DIGEST_LENGTH))
    else:
        cert = builder.sign(signer_key, algorithm)  # type: ignore[arg-type]
    return Issued(cert, key)


ROOT = make("Corp Root", key=_RSA, ca=True)
INTER = make("Corp Rooms CA", key=_EC, issuer=ROOT, ca=True, path_length=0)
LEAF = make("room-1", key=_EC2, issuer=INTER)


def check(
    leaf: Issued = LEAF,
    chain: Sequence[x509.Certificate] = (INTER.cert,),
    *,
    key: CertificateIssuerPrivateKeyTypes | None = None,
    trusted: Sequence[x509.Certificate] = (ROOT.cert,),
    purposes: Sequence[str] = ("HTTPS",),
    device: Device = DEVICE,
) -> tuple[x509.Certificate, ...]:
    return check_for_device(device, leaf.cert, chain, key or leaf.key, trusted=trusted,  # type: ignore[arg-type]
                            purposes=purposes, now=NOW, source=FILE)


def failure(**kwargs: object) -> str:
    with pytest.raises(CertificateCheckError) as info:
        check(**kwargs)  # type: ignore[arg-type]
    error = info.value
    assert error.device == "room-1"
    assert error.kind == "certificate-check"
    # the message itself names the file and the device (it is what reports show)
    assert error.message.startswith(f"{FILE}: not fit for room-1: ")
    return error.message


# --------------------------------------------------------------------------- happy paths


def test_good_chain_passes_for_every_purpose() -> None:
    path = check(purposes=["HTTPS", "SIP", "802.1X", "Audit"])
    assert path == (LEAF.cert, INTER.cert, ROOT.cert)


def test_chain_in_any_order_with_the_root_in_it() -> None:
    assert check(chain=[ROOT.cert, INTER.cert]) == (LEAF.cert, INTER.cert, ROOT.cert)


def test_trusting_the_intermediate_is_enough() -> None:
    assert check(chain=[], trusted=[INTER.cert]) == (LEAF.cert, INTER.cert)


def test_on_device_key_is_not_checked() -> None:
    check_for_device(DEVICE, LEAF.cert, [INTER.cert], None, trusted=[ROOT.cert],
                     purposes=["HTTPS"], now=NOW, source=FILE)


def test_signature_algorithms_rsa_pss_ecdsa_ed25519() -> None:
    ed_root = make("Ed Root", key=_ED, ca=True)
    rsa_leaf = make("room-1", key=_RSA, issuer=ed_root)  # Ed25519 signs an RSA leaf
    check(rsa_leaf, chain=[], trusted=[ed_root.cert])
    pss_leaf = make("room-1", issuer=ROOT, pss=True)  # RSA-PSS
    assert isinstance(pss_leaf.cert.signature_algorithm_parameters, padding.PSS)
    check(pss_leaf, chain=[], trusted=[ROOT.cert])
    assert isinstance(INTER.cert.signature_algorithm_parameters, padding.PKCS1v15)
    assert isinstance(LEAF.cert.signature_algorithm_parameters, ec.ECDSA)


def test_no_eku_and_no_ku_fit_everything() -> None:
    plain = make("room-1", issuer=INTER, eku=None)
    check(plain, purposes=["HTTPS", "SIP", "802.1X", "Audit", "HttpClient"])


# ------------------------------------------------------------------------------- key


def test_key_mismatch() -> None:
    message = failure(key=generate_key("ec-p256"))
    assert "the private key does not match the certificate" in message
    assert "'/CN=room-1'" in message and "EC secp256r1, SPKI SHA-256" in message


# -------------------------------------------------------------------------- validity


def test_expired() -> None:
    old = make("room-1", issuer=INTER, start=NOW - 400 * DAY, end=NOW - 10 * DAY)
    message = failure(leaf=old)
    expected_end = (NOW - 10 * DAY).strftime("%Y-%m-%d %H:%M")
    assert f"expired on {expected_end} UTC (10 days ago" in message


def test_not_yet_valid() -> None:
    future = make("room-1", issuer=INTER, start=NOW + 3 * DAY, end=NOW + 300 * DAY)
    message = failure(leaf=future)
    assert "is not valid yet" in message
    assert f"valid {(NOW + 3 * DAY):%Y-%m-%d %H:%M} UTC" in message
    assert "starts in 3 days" in message


def test_expires_within_a_day() -> None:
    soon = make("room-1", issuer=INTER, end=NOW + dt.timedelta(hours=5))
    message = failure(leaf=soon)
    assert "expires within a day" in message and "in 5 hours" in message


def test_expired_intermediate() -> None:
    old_inter = make("Corp Rooms CA", key=_EC, issuer=ROOT, ca=True,
                     start=NOW - 400 * DAY, end=NOW - DAY)
    message = failure(chain=[old_inter.cert])
    assert "the chain certificate '/CN=Corp Rooms CA'" in message and "expired on" in message


# ----------------------------------------------------------------------------- chain


def test_wrong_chain_trusted_ca_is_another() -> None:
    other = make("Partner Root", ca=True)
    message = failure(trusted=[other.cert])
    assert "does not lead to a CA the device trusts" in message
    assert "'/CN=Corp Root'" in message and "'/CN=Partner Root'" in message


def test_missing_intermediate() -> None:
    message = failure(chain=[])
    assert "whose issuer '/CN=Corp Rooms CA' is neither in the file" in message
    assert "holds no intermediate" in message


def test_self_signed_root_in_chain_not_trusted() -> None:
    other = make("Partner Root", ca=True)
    message = failure(chain=[INTER.cert, ROOT.cert], trusted=[other.cert])
    assert "self-signed" in message and "'/CN=Corp Root'" in message


def test_same_name_other_key_fails_on_key_identifier() -> None:
    impostor = make("Corp Root", ca=True)  # same name, another key
    message = failure(trusted=[impostor.cert])
    assert "chain is broken" in message and "authority key identifier" in message


def test_same_name_other_key_fails_on_signature_without_aki() -> None:
    impostor = make("Corp Rooms CA", ca=True)
    leaf = make("room-1", issuer=INTER, with_aki=False)
    message = failure(leaf=leaf, chain=[], trusted=[impostor.cert])
    assert "signature does not verify" in message


def test_intermediate_that_is_not_a_ca() -> None:
    not_ca = make("Corp Rooms CA", key=_EC, issuer=ROOT)  # CA:FALSE
    message = failure(chain=[not_ca.cert])
    assert "is not a CA certificate" in message


def test_intermediate_without_key_cert_sign() -> None:
    weak = make("Corp Rooms CA", key=_EC, issuer=ROOT, ca=True, ku=_ku(digital_signature=True))
    message = failure(chain=[weak.cert])
    assert "no keyCertSign" in message


def test_path_length_is_enforced() -> None:
    tight_root = make("Tight Root", key=_RSA, ca=True, path_length=0)
    inter = make("Corp Rooms CA", key=_EC, issuer=tight_root, ca=True)
    message = failure(chain=[inter.cert], trusted=[tight_root.cert])
    assert "pathLen" in message


def test_no_trusted_ca() -> None:
    assert "no trusted CA" in failure(trusted=[])


def test_verify_issued_by_detects_tampering() -> None:
    verify_issued_by(LEAF.cert, INTER.cert)
    with pytest.raises(ChainProblem, match="is not the subject"):
        verify_issued_by(LEAF.cert, ROOT.cert)


# ------------------------------------------------------------------------------ SANs


def test_san_missing_for_https_dns_host() -> None:
    leaf = make("room-1", issuer=INTER, dns=["room-2.rooms.example.com"])
    message = failure(leaf=leaf)
    assert f"DNS name {HOST}" in message
    assert "SAN DNS names are [room-2.rooms.example.com]" in message


def test_san_missing_for_https_ip_host() -> None:
    device = Device(name="room-1", host="10.0.0.7")
    leaf = make("room-1", issuer=INTER, ips=["10.0.0.8"])
    message = failure(leaf=leaf, device=device)
    assert "IP address 10.0.0.7" in message and "SAN IPs [10.0.0.8]" in message
    check(make("room-1", issuer=INTER, ips=["10.0.0.7"]), device=device)


def test_no_san_extension_at_all() -> None:
    leaf = make("room-1", issuer=INTER, with_san=False)
    assert "no subjectAltName extension at all" in failure(leaf=leaf)


def test_san_not_needed_for_8021x_nor_without_a_host() -> None:
    leaf = make("room-1", issuer=INTER, with_san=False)
    check(leaf, purposes=["802.1X"])
    check(leaf, purposes=["HTTPS"], device=Device(name="room-1", transport="cloud",
                                                   device_id="abc"))


def test_wildcard_matches_one_label() -> None:
    leaf = make("room-1", issuer=INTER, dns=["*.rooms.example.com"])
    check(leaf)
    deeper = Device(name="room-1", host="a.room-1.rooms.example.com")
    assert "DNS name a.room-1.rooms.example.com" in failure(leaf=leaf, device=deeper)


def test_host_matches() -> None:
    cert = make("x", dns=["Room-1.Example.com", "*.lab.example.com"],
                ips=["10.0.0.7", "2001:db8::7"]).cert
    assert host_matches("room-1.example.com", cert)
    assert host_matches("room-1.example.com.", cert)
    assert host_matches("a.lab.example.com", cert)
    assert not host_matches("lab.example.com", cert)
    assert not host_matches("a.b.lab.example.com", cert)
    assert host_matches("10.0.0.7", cert)
    assert host_matches("2001:db8:0::7", cert)
    assert host_matches("[2001:db8::7]", cert)
    assert not host_matches("10.0.0.8", cert)
    assert not host_matches("*.lab.example.com", make("y", dns=["a.lab.example.com"]).cert)


# -------------------------------------------------------------------------- usages


def test_eku_client_auth_only_for_https() -> None:
    client_only = make("room-1", issuer=INTER, eku=[CLIENT])
    message = failure(leaf=client_only)
    assert "for HTTPS the certificate needs extended key usage serverAuth" in message
    assert "it has only clientAuth" in message
    check(client_only, purposes=["802.1X", "Audit", "SIP"])


def test_eku_server_auth_only_for_8021x() -> None:
    server_only = make("room-1", issuer=INTER, eku=[SERVER])
    message = failure(leaf=server_only, purposes=["802.1X"])
    assert "for 802.1X the certificate needs extended key usage clientAuth" in message
    assert "it has only serverAuth" in message
    check(server_only, purposes=["HTTPS", "SIP"])


def test_sip_needs_one_of_them() -> None:
    signing = make("room-1", issuer=INTER, eku=[ExtendedKeyUsageOID.CODE_SIGNING])
    message = failure(leaf=signing, purposes=["SIP"])
    assert "serverAuth or clientAuth" in message and "codeSigning" in message


def test_any_extended_key_usage_is_accepted() -> None:
    check(make("room-1", issuer=INTER, eku=[ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE]),
          purposes=["HTTPS", "802.1X"])


def test_key_usage_for_https() -> None:
    agreement = make("room-1", issuer=INTER, ku=_ku(key_agreement=True))
    message = failure(leaf=agreement)
    assert "needs key usage digitalSignature or keyEncipherment" in message
    assert "it has only keyAgreement" in message
    rsa_leaf = make("room-1", key=_RSA, issuer=INTER, ku=_ku(key_encipherment=True))
    check(rsa_leaf)
    assert "needs key usage digitalSignature" in failure(leaf=rsa_leaf, purposes=["802.1X"])


def test_purposes_are_checked_and_normalized() -> None:
    assert normalize_purposes(["https", "802.1x,SIP", "HTTPS"]) == ("HTTPS", "802.1X", "SIP")
    with pytest.raises(InputError, match="unknown certificate purpose 'Web'"):
        normalize_purposes(["Web"])
    with pytest.raises(InputError):
        check(purposes=["Web"])
