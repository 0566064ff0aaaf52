"""A SCEP URL's ``user:password@`` is masked wherever a URL is shown or recorded (issue 14 item
19): tables, JSON, the journal's command line, arguments and errors — whether the URL came from
the command line or back from a device's renewal profile."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes

from certfleet.fleet.pki.local_ca import LocalCa

PASS = "scep-pass-4412"
URL = f"http://scep-user:{PASS}@127.0.0.1:9/cgi-bin/pkiclient.exe"


def test_scep_url_userinfo_is_masked_in_every_output(
    sim: Any, corp_ca: tuple[LocalCa, Path], cli: Any, tmp_path: Path
) -> None:
    inv = str(sim.inventory_path)
    ca_fp = corp_ca[0].cert.fingerprint(hashes.SHA1()).hex()
    assert cli("push-ca", str(corp_ca[1]), "-i", inv).exit_code == 0
    results = [
        cli("renewal", "set", "--ca-fingerprint", ca_fp, "--url", URL, "-i", inv),
        cli("renewal", "set", "--ca-fingerprint", ca_fp, "--url", URL, "-i", inv, "-o", "json"),
        cli("renewal", "list", "-i", inv),
        cli("renewal", "list", "-i", inv, "-o", "json"),
        cli("status", "-i", inv, "-o", "json"),
        cli("status", "-i", inv, "-o", "ndjson"),
        cli("runs", "list"),
        cli("runs", "list", "-o", "json"),
        cli("runs", "show", "last", "-o", "json"),
        cli("enroll", "--scep", URL, "--ca-fingerprint", "ab" * 32, "--challenge",
            "env:NO_SUCH_CHALLENGE_VAR", "-i", inv, "-o", "json"),
    ]
    assert results[0].exit_code == 0, results[0].output
    listed = results[3].json()
    assert any("scep-user" not in str(d) and "127.0.0.1:9" in str(d)
               for d in listed["devices"]), listed  # the profile is there, masked
    journal = Path(os.environ["CERTFLEET_JOURNAL"])
    blobs = b"".join(p.read_bytes() for p in journal.parent.glob(journal.name + "*"))
    assert PASS.encode() not in blobs
    for result in results:
        assert PASS not in result.output, result.output
