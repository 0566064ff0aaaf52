"""One reading of a certificate fingerprint for the whole client: a pin in the inventory, a SCEP
CA fingerprint, a renewal profile's CA and what a device reports are all normalised by
fleet.fingerprints.normalize_fingerprint."""

from __future__ import annotations

import pytest

from certfleet.fleet.errors import InputError, ScepError
from certfleet.fleet.fingerprints import normalize_fingerprint
from certfleet.fleet.inventory import Verify, parse_verify
from certfleet.fleet.pki.scep import ScepClient
from certfleet.fleet.pki.signers.factory import check_scep_options

SHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
SHA1 = "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3"


def colons(hexdigits: str) -> str:
    return ":".join(hexdigits[i:i + 2] for i in range(0, len(hexdigits), 2)).upper()


def spaced(hexdigits: str) -> str:
    return " ".join(hexdigits[i:i + 4] for i in range(0, len(hexdigits), 4))


@pytest.mark.parametrize("text", [SHA256, SHA256.upper(), colons(SHA256), spaced(SHA256),
                                  f"  {colons(SHA256)}\n"])
def test_every_written_form_reads_as_lowercase_hex(text: str) -> None:
    assert normalize_fingerprint(text) == SHA256
    assert normalize_fingerprint(text, lengths=(40, 64)) == SHA256
    assert normalize_fingerprint(text, lengths=(64,)) == SHA256


def test_any_length_unless_lengths_are_given() -> None:
    assert normalize_fingerprint("AB:CD") == "abcd"
    with pytest.raises(ValueError, match=r"4 hex digits.*SHA-256 \(64 hex digits\) or SHA-1 "
                                         r"\(40 hex digits\)"):
        normalize_fingerprint("AB:CD", lengths=(40, 64))
    with pytest.raises(ValueError, match=r"40 hex digits.*SHA-256 \(64 hex digits\) of"):
        normalize_fingerprint(SHA1, lengths=(64,))


@pytest.mark.parametrize(("text", "found"), [
    ("", "nothing"), (" : ", "nothing"), (SHA256[:-1] + "g", "'g', not a hex digit"),
    ("sha256:" + SHA256, "'s', not a hex digit"),
])
def test_what_is_wrong_is_named(text: str, found: str) -> None:
    with pytest.raises(ValueError, match=f"not a fingerprint \\({found}\\)"):
        normalize_fingerprint(text, lengths=(40, 64))


def test_an_inventory_pin_takes_the_same_forms_as_a_scep_ca_fingerprint() -> None:
    # spaces between the digits were refused in a pin, accepted in a SCEP CA fingerprint
    assert parse_verify(f"pin:sha256:{spaced(SHA256)}").pin_sha256 == SHA256
    assert Verify("pin", pin_sha256=colons(SHA256)).pin_sha256 == SHA256
    with pytest.raises(InputError, match=r"verify pin:sha256: not a fingerprint \(40 hex digits\)"
                                         r".*SHA-256 \(64 hex digits\)"):
        parse_verify(f"pin:sha256:{SHA1}")


def test_scep_options_client_and_signer_refuse_alike() -> None:
    with pytest.raises(InputError, match=r"--ca-fingerprint: not a fingerprint \(32 hex digits\)"):
        check_scep_options("http://127.0.0.1:9/scep", "0" * 32, url_option="--scep",
                           fingerprint_option="--ca-fingerprint")
    with pytest.raises(ScepError, match=r"not a fingerprint \(32 hex digits\)"):
        ScepClient("http://127.0.0.1:9/scep", ca_fingerprint="0" * 32)
    check_scep_options("http://127.0.0.1:9/scep", spaced(SHA1), url_option="--scep",
                       fingerprint_option="--ca-fingerprint")


def test_one_normaliser_behind_every_old_name() -> None:
    from certfleet.fleet.pki import certs

    assert certs.normalize_fingerprint is normalize_fingerprint
