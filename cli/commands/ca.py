"""certfleet ca init|sign|show — a small local CA for labs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from cryptography.hazmat.primitives import serialization

from cli import render, render_pki
from cli.options import OutputFormat, OutputOpt
from cli.runtime import guarded
from fleet.errors import InputError, PemError
from fleet.files import read_file
from fleet.pki.csr import load_csr_pem
from fleet.pki.keys import write_atomic
from fleet.pki.local_ca import (
    CA_CERT_FILE,
    CA_KEY_FILE,
    CA_KEY_KINDS,
    init_local_ca,
    load_ca_certificate,
    load_local_ca,
)
from fleet.secrets import Secret, parse_secret_ref

DEFAULT_CA_PASSPHRASE = "env:CERTFLEET_CA_PASSPHRASE"

app = typer.Typer(help="A small local CA for labs: init, sign, show.", no_args_is_help=True)

DirOpt = Annotated[
    Path, typer.Option("--dir", help="The CA's folder (ca.pem, ca.key).", show_default=False)
]
PassphraseOpt = Annotated[
    str,
    typer.Option(
        "--passphrase",
        help="Where the CA key passphrase is: env:VAR, keyring:SERVICE/USER or file:PATH "
        "(never the passphrase itself).",
    ),
]


def _passphrase(ref: str, *, encrypts: bool = False) -> Secret:
    try:
        secret = parse_secret_ref(ref)
        return secret.resolve_passphrase() if encrypts else secret.resolve()
    except InputError as exc:
        raise InputError(f"--passphrase: {exc}") from None


@app.command("init")
@guarded
def init(
    directory: DirOpt,
    cn: str = typer.Option(..., "--cn", help="The CA's common name.", show_default=False),
    org: str | None = typer.Option(None, "--org", help="The CA's organization (O)."),
    key: str = typer.Option("ec-p256", "--key", help=f"Key type: {', '.join(CA_KEY_KINDS)}."),
    days: int = typer.Option(3650, "--days", min=1, help="How long the CA is valid."),
    passphrase: PassphraseOpt = DEFAULT_CA_PASSPHRASE,
) -> None:
    """Make a CA in --dir: ca.pem and ca.key (encrypted, mode 0600). Never overwrites one."""
    secret = _passphrase(passphrase, encrypts=True)
    ca = init_local_ca(directory, common_name=cn, organization=org, key_kind=key, days=days,
                       passphrase=secret)
    render_pki.certificate_summary(
        ca.cert, title="local CA created",
        files=[directory / CA_CERT_FILE, directory / f"{CA_KEY_FILE} (encrypted, mode 0600)"],
    )


@app.command("sign")
@guarded
def sign(
    csr_file: Annotated[
        Path, typer.Argument(help="The CSR (PEM) to sign.", show_default=False)
    ],
    directory: DirOpt,
    passphrase: PassphraseOpt = DEFAULT_CA_PASSPHRASE,
    days: int = typer.Option(365, "--days", min=1, help="How long the certificate is valid."),
    out: Path | None = typer.Option(
        None, "--out", help="Write the certificate here (default: print it to stdout)."
    ),
) -> None:
    """Issue a certificate for a CSR: its subject and SANs, serverAuth + clientAuth."""
    try:
        data = read_file(csr_file)  # never blocks on a FIFO, never reads /dev/zero, capped
    except FileNotFoundError:
        raise PemError("does not exist", file=str(csr_file)) from None
    except OSError as exc:
        raise PemError(f"cannot be read: {exc.strerror or exc}", file=str(csr_file)) from None
    csr = load_csr_pem(data, source=str(csr_file))
    ca = load_local_ca(directory, _passphrase(passphrase))
    cert = ca.sign_csr(csr, days=days)
    text = cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
    if out is None:
        render_pki.pem(text)
        return
    try:
        write_atomic(out, text.encode("ascii"), mode=0o644)
    except OSError as exc:
        raise InputError(f"cannot write {out}: {exc.strerror or exc}") from None
    render_pki.certificate_summary(cert, title="certificate issued", files=[out], to_stderr=True)


@app.command("show")
@guarded
def show(
    directory: DirOpt,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """The CA certificate: subject, fingerprints (SHA-1, SHA-256), validity. No passphrase."""
    cert = load_ca_certificate(directory)
    files = [directory / CA_CERT_FILE]
    if output is OutputFormat.json:
        render.emit_json(
            render_pki.certificate_document(cert, schema="certfleet/ca/v1", files=files)
        )
    else:
        render_pki.certificate_summary(cert, title="local CA", files=files)
