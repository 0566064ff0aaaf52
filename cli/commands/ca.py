"""certfleet ca init|sign|show — a small local CA for labs."""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path
from typing import Annotated

import platformdirs
import typer
from cryptography.hazmat.primitives import serialization
from rich.text import Text

from certfleet.fleet.errors import InputError, PemError
from certfleet.fleet.files import read_file
from certfleet.fleet.pki.csr import load_csr_pem
from certfleet.fleet.pki.keys import write_atomic
from certfleet.fleet.pki.local_ca import (
    CA_CERT_FILE,
    CA_KEY_FILE,
    CA_KEY_KINDS,
    init_local_ca,
    load_ca_certificate,
    load_local_ca,
)
from certfleet.fleet.secrets import Secret, parse_secret_ref

from .. import render, render_pki
from ..options import OutputFormat, OutputOpt
from ..runtime import guarded

PASSPHRASE_ENV = "CERTFLEET_CA_PASSPHRASE"
DEFAULT_CA_PASSPHRASE = f"env:{PASSPHRASE_ENV}"


def default_ca_dir() -> Path:
    """Where `ca init|sign|show` keep the CA when --dir is not given: the user's data folder
    (beside the run journal), e.g. ~/.local/share/certfleet/ca."""
    return Path(platformdirs.user_data_dir("certfleet")) / "ca"


def default_passphrase_file() -> Path:
    """Where `ca init` puts a passphrase it generates: the user's config folder, apart from
    the CA folder, so a copy of the CA folder does not carry the key's passphrase with it."""
    return Path(platformdirs.user_config_dir("certfleet")) / "ca-passphrase"

app = typer.Typer(help="A small local CA for labs: init, sign, show.", no_args_is_help=True)

DirOpt = Annotated[
    Path | None,
    typer.Option("--dir", help="The CA's folder (ca.pem, ca.key); default: "
                 "certfleet's data folder, e.g. ~/.local/share/certfleet/ca.",
                 show_default=False),
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


def _generated_passphrase() -> tuple[str, str]:
    """A passphrase file made for `ca init` (random, mode 0600, never overwritten; an existing
    one is used as it is): (its reference, what was done)."""
    path = default_passphrase_file()
    if path.exists():
        return f"file:{path}", "the existing passphrase file"
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(path, (secrets.token_urlsafe(32) + "\n").encode("ascii"), mode=0o600,
                     overwrite=False)
    except FileExistsError:
        return f"file:{path}", "the existing passphrase file"
    except OSError as exc:
        raise InputError(
            f"cannot write a passphrase file {path}: {exc.strerror or exc}; give --passphrase "
            f"or set {PASSPHRASE_ENV}"
        ) from None
    return f"file:{path}", "a new random passphrase (mode 0600) written for you"


@app.command("init")
@guarded
def init(
    directory: DirOpt = None,
    cn: str | None = typer.Option(
        None, "--cn", help="The CA's common name (default: 'certfleet lab CA on <host name>').",
        show_default=False,
    ),
    org: str | None = typer.Option(None, "--org", help="The CA's organization (O)."),
    key: str = typer.Option("ec-p256", "--key", help=f"Key type: {', '.join(CA_KEY_KINDS)}."),
    days: int = typer.Option(3650, "--days", min=1, help="How long the CA is valid."),
    passphrase: str | None = typer.Option(
        None, "--passphrase",
        help=f"Where the CA key passphrase is: env:VAR, keyring:SERVICE/USER or file:PATH "
        f"(never the passphrase itself). Default: env:{PASSPHRASE_ENV} when that is set, else "
        "a random one generated into a mode-0600 file in certfleet's config folder.",
        show_default=False,
    ),
) -> None:
    """Make a CA in --dir: ca.pem and ca.key (encrypted, mode 0600). Never overwrites one.
    Every option has a default; what was used is printed."""
    folder = directory if directory is not None else default_ca_dir()
    common_name = cn if cn is not None else f"certfleet lab CA on {socket.gethostname()}"
    if passphrase is not None:
        ref, how = passphrase, "as given"
    elif os.environ.get(PASSPHRASE_ENV):
        ref, how = DEFAULT_CA_PASSPHRASE, "from the environment"
    else:
        # refuse early if the CA folder already holds a CA, before a passphrase file is made
        for name in (CA_CERT_FILE, CA_KEY_FILE):
            if (folder / name).exists():
                raise InputError(f"{folder / name} exists: {folder} already holds a CA; "
                                 "refusing to overwrite it")
        ref, how = _generated_passphrase()
    secret = _passphrase(ref, encrypts=True)
    ca = init_local_ca(folder, common_name=common_name, organization=org, key_kind=key,
                       days=days, passphrase=secret)
    render_pki.certificate_summary(
        ca.cert, title="local CA created",
        files=[folder / CA_CERT_FILE, folder / f"{CA_KEY_FILE} (encrypted, mode 0600)"],
    )
    out = render.stdout()
    out.print(Text(f"key passphrase: {ref} ({how})"), soft_wrap=True)
    if ref.startswith("file:") and how != "as given":
        out.print(Text("anyone who can read that file can use this CA: for more than a lab, "
                       "move the passphrase to a keyring (keyring:SERVICE/USER) and delete it"),
                  soft_wrap=True)
    out.print(Text(f"sign with: certfleet rotate --signer local-ca --ca-dir {folder} "
                   f"--ca-passphrase {ref} --purpose HTTPS"), soft_wrap=True)


@app.command("sign")
@guarded
def sign(
    csr_file: Annotated[
        Path, typer.Argument(help="The CSR (PEM) to sign.", show_default=False)
    ],
    directory: DirOpt = None,
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
    ca = load_local_ca(directory or default_ca_dir(), _passphrase(passphrase))
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
    directory: DirOpt = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """The CA certificate: subject, fingerprints (SHA-1, SHA-256), validity. No passphrase."""
    directory = directory or default_ca_dir()
    cert = load_ca_certificate(directory)
    files = [directory / CA_CERT_FILE]
    if output is OutputFormat.json:
        render.emit_json(
            render_pki.certificate_document(cert, schema="certfleet/ca/v1", files=files)
        )
    else:
        render_pki.certificate_summary(cert, title="local CA", files=files)
