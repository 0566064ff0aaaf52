"""A device's certificate list entries (Services Show, CA Show ``Details``) as certfleet reads
them: the same entry listed by many devices reads the same each time, whatever it holds."""

from __future__ import annotations

import datetime as dt

import pytest

from certfleet.fleet.errors import BadReplyError
from certfleet.fleet.xapi.commands import CertificateInfo

_ENTRY = {
    "Fingerprint": "AB:CD:" * 9 + "EF:01",
    "SubjectName": "CN=Example Root",
    "IssuerName": "CN=Example Root",
    "notBefore": "Aug 08 03:04:26 2023 GMT",
    "notAfter": "Aug 8 03:04:26 2033 GMT",
    "SerialNumber": "1234",
    "PublicKeySize": "2048",
    "UsedFor": "SIP, HTTPS server",
}


def test_the_same_entry_reads_the_same_on_every_device() -> None:
    first = CertificateInfo.from_details(dict(_ENTRY), "Security/Certificates/CA/Show")
    again = CertificateInfo.from_details(dict(_ENTRY), "Security/Certificates/CA/Show")
    assert first == again
    assert first.fingerprint == "abcd" * 9 + "ef01"
    assert first.not_after == dt.datetime(2033, 8, 8, 3, 4, 26, tzinfo=dt.UTC)
    assert first.purposes == ("SIP", "HTTPS")
    other = CertificateInfo.from_details({**_ENTRY, "SerialNumber": "99"}, "x")
    assert other.serial == "99" and first.serial == "1234"


def test_an_entry_holding_a_structure_is_read_too() -> None:
    entry = {**_ENTRY, "Extra": {"Nested": "yes"}, "More": ["a", "b"]}
    info = CertificateInfo.from_details(entry, "Security/Certificates/Services/Show")
    assert info.subject == "CN=Example Root" and info.key_size == "2048"


@pytest.mark.parametrize("where", ["Security/Certificates/CA/Show", "elsewhere"])
def test_a_bad_fingerprint_is_refused_every_time_naming_the_list(where: str) -> None:
    bad = {**_ENTRY, "Fingerprint": "not hex"}
    for _ in range(2):
        with pytest.raises(BadReplyError, match=f"{where}: Details entry without a valid"):
            CertificateInfo.from_details(dict(bad), where)


def test_a_ca_is_matched_by_either_fingerprint_in_any_spelling() -> None:
    from certfleet.fleet.pki.certs import CaCertificate

    ca = CaCertificate(source="ca.pem", cert=None, pem="", sha1="ab" * 20,  # type: ignore[arg-type]
                       sha256="cd" * 32, subject="CN=x",
                       not_after=dt.datetime(2033, 1, 1, tzinfo=dt.UTC))
    assert ca.matches("ab" * 20) and ca.matches("cd" * 32)
    assert ca.matches("AB:" * 19 + "AB") and ca.matches(" ".join(["CD"] * 32))
    assert not ca.matches("ab" * 19 + "ac") and not ca.matches("") and not ca.matches("zz")
