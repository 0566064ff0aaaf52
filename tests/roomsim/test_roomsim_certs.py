"""Certificate commands against roomsim: CA list, service certificates, the HTTPS switch."""

from __future__ import annotations

import hashlib
import re
import ssl
from xml.sax.saxutils import escape

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

DETAIL_FIELDS = [
    "Fingerprint", "HashingAlgorithm", "IssuerName", "PublicKeySize", "SerialNumber",
    "SignatureAlgorithm", "SubjectName", "UsedFor", "Version", "notAfter", "notBefore",
]  # fmt: skip
DATE = re.compile(r"^[A-Z][a-z]{2} \d{2} \d{2}:\d{2}:\d{2} \d{4} GMT$")


def command(path: str, params: str = "", body: str | None = None, marked: bool = False) -> str:
    """`Security/Certificates/CA/Add` + params → a putxml document; the body XML-escaped."""
    *parents, leaf = path.split("/")
    inner = params + (f"<body>{escape(body)}</body>" if body is not None else "")
    attribute = ' command="True"' if marked else ""
    xml = f"<{leaf}{attribute}>{inner}</{leaf}>"
    for parent in reversed(parents):
        xml = f"<{parent}>{xml}</{parent}>"
    return f"<Command>{xml}</Command>"


def sha1_of_pem(pem: bytes) -> str:
    return x509.load_pem_x509_certificate(pem).fingerprint(hashes.SHA1()).hex()


def result(reply, tag):
    element = reply.find(tag)
    assert element is not None, [c.tag for c in reply]
    return element


async def test_ca_add_show_delete_round_trip(sim, xapi):
    root_a, root_b = trustme.CA(), trustme.CA(organization_name="Example Corp")
    pem_a, pem_b = root_a.cert_pem.bytes().decode(), root_b.cert_pem.bytes().decode()

    ok = await xapi.putxml(command("Security/Certificates/CA/Add", body=pem_a + pem_b))
    assert result(ok, "CAAddResult").get("status") == "OK"
    again = await xapi.putxml(command("Security/Certificates/CA/Add", body=pem_a, marked=True))
    assert result(again, "CAAddResult").get("status") == "OK"  # already present: kept once

    show = result(await xapi.putxml(command("Security/Certificates/CA/Show")), "CAShowResult")
    details = show.findall("Details")
    assert [d.get("item") for d in details] == ["1", "2"]
    assert all(d.get("maxOccurrence") == "n" for d in details)
    first = details[0]
    assert first.findtext("Fingerprint") == sha1_of_pem(pem_a.encode())
    assert first.find("UsedFor") is None
    cert_a = x509.load_pem_x509_certificate(pem_a.encode())
    assert first.findtext("SerialNumber").lstrip("0") == f"{cert_a.serial_number:X}"
    assert first.findtext("SignatureAlgorithm") in ("rsaEncryption", "id-ecPublicKey")
    assert first.findtext("HashingAlgorithm") in ("sha256WithRSAEncryption", "ecdsa-with-SHA256")
    assert DATE.match(first.findtext("notAfter")) and DATE.match(first.findtext("notBefore"))
    assert details[1].findtext("SubjectName").startswith("/O=Example Corp/")
    assert show.findtext("Format") == "Text"

    pem_show = await xapi.putxml(command("Security/Certificates/CA/Show", "<Format>PEM</Format>"))
    assert "BEGIN CERTIFICATE" in pem_show.find("CAShowResult/Details/PEM").text

    # Delete by SHA-256, upper case with colons: tolerated.
    sha256 = cert_a.fingerprint(hashes.SHA256()).hex().upper()
    colons = ":".join(sha256[i : i + 2] for i in range(0, len(sha256), 2))
    deleted = await xapi.putxml(
        command("Security/Certificates/CA/Delete", f"<Fingerprint>{colons}</Fingerprint>")
    )
    assert result(deleted, "CADeleteResult").get("status") == "OK"
    assert [c.fingerprint for c in sim.devices["room-001"].ca_list] == [sha1_of_pem(pem_b.encode())]

    missing = await xapi.putxml(
        command("Security/Certificates/CA/Delete", f"<Fingerprint>{'ab' * 20}</Fingerprint>")
    )
    failed = result(missing, "CADeleteResult")
    assert failed.get("status") == "Error" and "No CA certificate" in failed.findtext("Reason")


async def test_ca_add_refuses_bad_bodies(sim, xapi):
    leaf = trustme.CA().issue_cert("x.example")
    cases = {
        "no certificate here": "No PEM certificate",
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n": "malformed",
        leaf.cert_chain_pems[0].bytes().decode() + leaf.private_key_pem.bytes().decode(): (
            "private key"
        ),
    }
    for body, reason in cases.items():
        reply = await xapi.putxml(command("Security/Certificates/CA/Add", body=body))
        failed = result(reply, "CAAddResult")
        assert failed.get("status") == "Error"
        assert reason in failed.findtext("Reason"), failed.findtext("Reason")
    assert sim.devices["room-001"].ca_list == []


async def test_factory_store_and_https_switch(sim, xapi, tls_peer_sha1):
    device = sim.devices["room-001"]
    verify_sim = ssl.create_default_context(cafile=str(sim.ca_pem_path))
    original = await tls_peer_sha1(device.port, verify_sim)

    show = await xapi.putxml(command("Security/Certificates/Services/Show"))
    details = result(show, "ServicesShowResult").findall("Details")
    assert [d.findtext("UsedFor") for d in details] == ["HTTPS server", ""]
    assert details[0].findtext("Fingerprint") == original
    assert details[0].findtext("SubjectName") == "/CN=room-001"
    assert details[0].findtext("IssuerName") == "/CN=roomsim device CA"
    assert "O=TemporaryDefaultCertificate" in details[1].findtext("IssuerName")
    assert [e.tag for e in details[0]] == DETAIL_FIELDS

    # A chain: root → intermediate → leaf for 127.0.0.1; key as PKCS#8 after the chain.
    root = trustme.CA()
    intermediate = root.create_child_ca()
    issued = intermediate.issue_cert("127.0.0.1", "room-001")
    leaf_pem, intermediate_pem = (p.bytes().decode() for p in issued.cert_chain_pems)
    body = leaf_pem + intermediate_pem + issued.private_key_pem.bytes().decode()
    added = await xapi.putxml(command("Security/Certificates/Services/Add", body=body))
    assert result(added, "ServicesAddResult").get("status") == "OK"
    new = sha1_of_pem(leaf_pem.encode())

    activate = command(
        "Security/Certificates/Services/Activate",
        f"<Fingerprint>{new}</Fingerprint><Purpose>HTTPS</Purpose>",
        marked=True,
    )
    assert result(await xapi.putxml(activate), "ServicesActivateResult").get("status") == "OK"

    verify_new = ssl.create_default_context()
    root.configure_trust(verify_new)
    assert await tls_peer_sha1(device.port, verify_new) == new  # chain verifies too

    show = await xapi.putxml(
        command(
            "Security/Certificates/Services/Show",
            "<FingerprintAlgorithm>SHA-256</FingerprintAlgorithm>",
        )
    )
    details = result(show, "ServicesShowResult").findall("Details")
    used = {d.findtext("SubjectName"): d.findtext("UsedFor") for d in details}
    assert used["/CN=room-001"] == ""  # the factory certificate lost HTTPS
    assert [d.findtext("UsedFor") for d in details[-2:]] == ["HTTPS server"] * 2
    leaf_sha256 = hashlib.sha256(
        x509.load_pem_x509_certificate(leaf_pem.encode()).public_bytes(serialization.Encoding.DER)
    ).hexdigest()
    assert details[-2].findtext("Fingerprint") == leaf_sha256

    # Also SIP: UsedFor lists both, in activation order; the filter shows only SIP ones.
    await xapi.putxml(
        command(
            "Security/Certificates/Services/Activate",
            f"<Fingerprint>{new.upper()}</Fingerprint><Purpose>SIP</Purpose>",
        )
    )
    sip = await xapi.putxml(command("Security/Certificates/Services/Show", "<Filter>SIP</Filter>"))
    sip_details = result(sip, "ServicesShowResult").findall("Details")
    assert [d.findtext("UsedFor") for d in sip_details] == ["HTTPS server, SIP"] * 2

    # Deactivate HTTPS: the device falls back to its temporary default certificate.
    deactivate = command(
        "Security/Certificates/Services/Deactivate",
        f"<Fingerprint>{new}</Fingerprint><Purpose>HTTPS</Purpose>",
    )
    assert result(await xapi.putxml(deactivate), "ServicesDeactivateResult").get("status") == "OK"
    no_verify = ssl.create_default_context()
    no_verify.check_hostname = False
    no_verify.verify_mode = ssl.CERT_NONE
    fallback = await tls_peer_sha1(device.port, no_verify)
    assert fallback == device.store.temporary_default().fingerprint

    delete = command("Security/Certificates/Services/Delete", f"<Fingerprint>{new}</Fingerprint>")
    assert result(await xapi.putxml(delete), "ServicesDeleteResult").get("status") == "OK"
    again = result(await xapi.putxml(delete), "ServicesDeleteResult")
    assert again.get("status") == "Error"
    assert "No service certificate" in again.findtext("Reason")


async def test_services_add_errors_and_encrypted_keys(sim, xapi):
    issuer = trustme.CA()
    one, other = issuer.issue_cert("one.example"), issuer.issue_cert("two.example")
    leaf = one.cert_chain_pems[0].bytes().decode()
    key = serialization.load_pem_private_key(one.private_key_pem.bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"s3cret"),
    ).decode()

    def add(body: str, password: str | None = None) -> str:
        params = "" if password is None else f"<PrivateKeyPassword>{password}</PrivateKeyPassword>"
        return command("Security/Certificates/Services/Add", params, body=body)

    cases = [
        (add("nothing"), "No PEM certificate"),
        (add(leaf), "No private key"),
        (add(leaf + other.private_key_pem.bytes().decode()), "does not match"),
        (add(leaf + encrypted), "no PrivateKeyPassword"),
        (add(leaf + encrypted, "wrong"), "wrong PrivateKeyPassword"),
    ]
    for document, reason in cases:
        failed = result(await xapi.putxml(document), "ServicesAddResult")
        assert failed.get("status") == "Error"
        assert reason in failed.findtext("Reason"), failed.findtext("Reason")
    assert len(sim.devices["room-001"].services) == 2

    ok = result(await xapi.putxml(add(leaf + encrypted, "s3cret")), "ServicesAddResult")
    assert ok.get("status") == "OK"
    assert sim.devices["room-001"].services[-1].fingerprint == sha1_of_pem(leaf.encode())

    sim.set_fault("room-001", reject_certificates=True)
    rejected = result(await xapi.putxml(add(leaf + encrypted, "s3cret")), "ServicesAddResult")
    assert rejected.get("status") == "Error"
    assert rejected.findtext("Reason") == "Certificate rejected by device policy"


async def test_activate_unknown_fingerprint_is_error(xapi):
    reply = await xapi.putxml(
        command(
            "Security/Certificates/Services/Activate",
            f"<Fingerprint>{'0' * 40}</Fingerprint><Purpose>802.1X</Purpose>",
        )
    )
    failed = result(reply, "ServicesActivateResult")
    assert failed.get("status") == "Error"
    assert "No service certificate with fingerprint" in failed.findtext("Reason")


async def test_https_identity_reloads_exactly_when_what_is_served_changes(
    sim, xapi, tls_peer_sha1
):
    import pytest

    device = sim.devices["room-001"]
    root = trustme.CA()
    intermediate = root.create_child_ca()
    issued = intermediate.issue_cert("127.0.0.1", "room-001")
    leaf_pem, intermediate_pem = (p.bytes().decode() for p in issued.cert_chain_pems)
    key_pem = issued.private_key_pem.bytes().decode()
    new = sha1_of_pem(leaf_pem.encode())
    trusts_root = ssl.create_default_context()
    root.configure_trust(trusts_root)

    # the leaf alone, active for HTTPS: served, without the intermediate a client needs
    added = await xapi.putxml(command("Security/Certificates/Services/Add", body=leaf_pem + key_pem))
    assert result(added, "ServicesAddResult").get("status") == "OK"
    activate = command("Security/Certificates/Services/Activate",
                       f"<Fingerprint>{new}</Fingerprint><Purpose>HTTPS</Purpose>")
    assert result(await xapi.putxml(activate), "ServicesActivateResult").get("status") == "OK"
    with pytest.raises(ssl.SSLCertVerificationError):
        await tls_peer_sha1(device.port, trusts_root)
    served = device.tls.current_context()

    # another certificate comes and goes: what the server presents stays loaded as it was
    other = trustme.CA().issue_cert("other.example")
    other_pem = other.cert_chain_pems[0].bytes().decode()
    body = other_pem + other.private_key_pem.bytes().decode()
    assert result(await xapi.putxml(command("Security/Certificates/Services/Add", body=body)),
                  "ServicesAddResult").get("status") == "OK"
    other_fp = sha1_of_pem(other_pem.encode())
    delete = command("Security/Certificates/Services/Delete",
                     f"<Fingerprint>{other_fp}</Fingerprint>")
    assert result(await xapi.putxml(delete), "ServicesDeleteResult").get("status") == "OK"
    assert device.tls.current_context() is served

    # the same leaf uploaded again with its intermediate: the next handshake sends the chain
    body = leaf_pem + intermediate_pem + key_pem
    assert result(await xapi.putxml(command("Security/Certificates/Services/Add", body=body)),
                  "ServicesAddResult").get("status") == "OK"
    assert await tls_peer_sha1(device.port, trusts_root) == new
