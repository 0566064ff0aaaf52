"""No secret in any artefact of a run (issue 14 item 2).

Secrets are planted the ways they leak: a Webex token with a trailing newline (httpx then
refuses the header and quotes it), a password with a trailing CR LF, quotes, a backslash and
non-ASCII, and a hostile device whose error reason quotes the password as it arrived, JSON-
escaped and as a bytes repr. Then every output format runs (table, JSON, NDJSON, JUnit, the HTML
report, Prometheus, `runs show`/`runs list`) and every artefact — stdout, stderr, files, the
SQLite journal's bytes — is searched for the secret in every form an escaper gives it, and
in every form escaping one of those gives (what serialising a quoted secret again makes).
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape as xml_escape

import pytest
import yaml
from hostile_device import hostile_device

from certfleet.fleet.pki.local_ca import create_ca

PASSWORD = 'pä"ss\\wörd-leak-4471\r\n'
TOKEN_TAIL = "\n"


def _forms(secret: str) -> set[str]:
    return {
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        repr(secret)[1:-1],
        repr(secret.encode())[2:-1],
        xml_escape(secret, {'"': "&quot;", "'": "&apos;"}),
        html.escape(secret),
        quote(secret, safe=""),
    }


def leaked_forms(secret: str) -> set[str]:
    """The secret, with and without its trailing newline/CR, in every form one or two rounds of
    escaping give it."""
    found: set[str] = set()
    for base in {secret, secret.rstrip("\r\n")}:
        for form in _forms(base):
            found |= _forms(form)
    return {f for f in found if len(f) >= 8}


def assert_no_secret(artefacts: dict[str, bytes], secrets: list[str]) -> None:
    for secret in secrets:
        for form in leaked_forms(secret):
            needle = form.encode("utf-8", "surrogatepass")
            for name, data in artefacts.items():
                assert needle not in data, f"{form!r} of a secret is in {name}"


@pytest.fixture
def cloud_sim(tmp_path: Path) -> Iterator[Any]:
    from certfleet.roomsim import SimFleetThread

    with SimFleetThread(tmp_path / "sim", devices=2, cloud=True) as fleet:
        yield fleet


def test_no_secret_in_any_artefact_of_any_output(cloud_sim: Any, tmp_path: Path, cli: Any,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    token = cloud_sim.cloud_token + TOKEN_TAIL
    monkeypatch.setenv("LEAK_TOKEN", token)
    monkeypatch.setenv("LEAK_PASSWORD", PASSWORD)
    reason = ("login refused for {password} (json \"{password_json}\", "
              "bytes b'{password_repr}')")
    ca = create_ca("Leak Test CA")
    pem = tmp_path / "ca.pem"
    pem.write_text(ca.cert_pem)
    out = tmp_path / "out"
    out.mkdir()
    results = []
    with hostile_device(tmp_path / "evil", reason) as device:
        inv = yaml.safe_load(cloud_sim.write_inventory(tmp_path / "cloud.yaml",
                                                       cloud=True).read_text())
        inv["defaults"]["token"] = "env:LEAK_TOKEN"
        inv["devices"]["evil-room"] = device.inventory_entry("env:LEAK_PASSWORD")
        path = tmp_path / "inventory.yaml"
        path.write_text(yaml.safe_dump(inv))
        i = str(path)
        results += [
            cli("--junit", str(out / "push.xml"), "push-ca", str(pem), "-i", i),
            cli("push-ca", str(pem), "-i", i, "-o", "json"),
            cli("push-ca", str(pem), "-i", i, "-o", "ndjson"),
            cli("status", "-i", i),
            cli("status", "-i", i, "-o", "json"),
            cli("--junit", str(out / "status.xml"), "status", "-i", i, "-o", "ndjson"),
            cli("status", "-i", i, "-o", "prometheus"),
            cli("report", "--html", str(out / "report.html"), "-i", i),
        ]
        assert device.last_login  # the hostile device was asked, and answered with the password
    results += [cli("runs", "show", "last"), cli("runs", "show", "last", "-o", "json"),
                cli("runs", "list"), cli("runs", "list", "-o", "json")]
    assert all(r.exit_code in (0, 1) for r in results), [r.output for r in results]
    # the secrets did reach the outputs' inputs: the device's reason and the token's error
    document = results[1].json()
    evil = next(d for d in document["devices"] if d["device"] == "evil-room")
    assert "login refused for" in evil["error"]["message"]
    artefacts = {f"run {n} {stream}": getattr(r, stream).encode("utf-8", "surrogatepass")
                 for n, r in enumerate(results) for stream in ("stdout", "stderr")}
    for file in out.iterdir():
        artefacts[file.name] = file.read_bytes()
    journal = Path(os.environ["CERTFLEET_JOURNAL"])
    for file in journal.parent.glob(journal.name + "*"):
        artefacts[file.name] = file.read_bytes()
    assert_no_secret(artefacts, [PASSWORD, token])
