"""cli.render_pki — what ``certfleet ca`` and ``certfleet csr`` show (tables via rich).

Like :mod:`cli.render`: tables to stdout, notes to stderr, every text through the redactor.
Private keys are never shown; a key is named by the SHA-256 of its public key.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from rich.table import Table
from rich.text import Text

from certfleet.fleet.pki.certs import fingerprint, oneline_name
from certfleet.fleet.pki.csr import san_strings
from certfleet.fleet.pki.csr_batch import CsrRow
from certfleet.fleet.pki.keys import key_kind
from certfleet.fleet.secrets import redact

from . import render


def _cert_facts(cert: x509.Certificate) -> dict[str, Any]:
    public = cert.public_key()
    if isinstance(public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        kind = key_kind(public)
    else:
        kind = type(public).__name__
    return {
        "subject": oneline_name(cert.subject),
        "issuer": oneline_name(cert.issuer),
        "serial": f"{cert.serial_number:x}",
        "key": kind,
        "sha1": fingerprint(cert, "sha1"),
        "sha256": fingerprint(cert, "sha256"),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "sans": san_strings(cert),
    }


def certificate_document(
    cert: x509.Certificate, *, schema: str, files: Sequence[Path] = ()
) -> dict[str, Any]:
    return {"schema": schema, **_cert_facts(cert), "files": [str(f) for f in files]}


def certificate_summary(
    cert: x509.Certificate, *, title: str, files: Sequence[Path] = (), to_stderr: bool = False
) -> None:
    """Subject, issuer, key, fingerprints (SHA-1 as RoomOS shows them, and SHA-256), dates."""
    facts = _cert_facts(cert)
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    table.add_row("subject", facts["subject"])
    if facts["issuer"] != facts["subject"]:
        table.add_row("issuer", facts["issuer"])
    table.add_row("key", facts["key"])
    table.add_row("SHA-1", facts["sha1"])
    table.add_row("SHA-256", facts["sha256"])
    table.add_row("not before", f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC")
    table.add_row("not after", f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    if facts["sans"]:
        table.add_row("SANs", ", ".join(facts["sans"]))
    for file in files:
        table.add_row("file", str(file))
    (render.stderr() if to_stderr else render.stdout()).print(table)


def pem(text: str) -> None:
    """A certificate PEM, as is, to stdout (for pipes: nothing else goes there)."""
    sys.stdout.write(text)
    sys.stdout.flush()


def csr_table(rows: Sequence[CsrRow]) -> None:
    table = Table(title=f"{len(rows)} key(s) and CSR(s)", title_justify="left")
    for name in ("device", "key", "subject", "SANs", "files"):
        table.add_column(name, overflow="fold", no_wrap=name == "device")
    for row in rows:
        lock = " (encrypted)" if row.encrypted else ""
        table.add_row(
            row.device,
            row.key_kind,
            redact(row.subject),
            redact("\n".join(row.sans)),
            f"{row.key_file}{lock}\n{row.csr_file}",
        )
    render.stdout().print(table)


def csr_document(rows: Sequence[CsrRow]) -> dict[str, Any]:
    return {
        "schema": "certfleet/csr/v1",
        "devices": [
            {
                "device": row.device,
                "key": row.key_kind,
                "subject": row.subject,
                "sans": list(row.sans),
                "key_file": str(row.key_file),
                "key_encrypted": row.encrypted,
                "csr_file": str(row.csr_file),
                "public_key_sha256": row.public_key_sha256,
            }
            for row in rows
        ],
    }


def done(message: str) -> None:
    render.stderr().print(Text(redact(message), style="green"))
