"""certfleet push-cert — upload a signed certificate + key, activate it, verify it."""

from __future__ import annotations

from pathlib import Path

import typer

from cli.options import Common, fleet_options
from cli.runtime import execute, finish, guarded, select
from fleet.errors import InputError, PemError
from fleet.files import read_file
from fleet.pki.bundle import parse_bundle
from fleet.pki.certs import parse_pem_certificates
from fleet.pki.keys import load_key_pem, same_public_key
from fleet.plans.install import NewCertificate, parse_purposes
from fleet.plans.push_cert import PushCert
from fleet.secrets import Secret, parse_secret_ref


def _read(path: Path) -> bytes:
    try:
        return read_file(path)  # never blocks on a FIFO, never reads /dev/zero, capped
    except FileNotFoundError:
        raise PemError("does not exist", file=str(path)) from None
    except OSError as exc:
        raise PemError(f"cannot be read: {exc.strerror}", file=str(path)) from exc


def load_new_certificate(cert: Path, key: Path | None, passphrase: Secret | None) -> NewCertificate:
    """A bundle (leaf + chain, maybe with its key) and, if separate, its key file."""
    data = _read(cert)
    bundle = parse_bundle(data, source=str(cert))
    private = bundle.key
    if key is not None:
        private = load_key_pem(_read(key), passphrase, source=str(key))
    if private is None:
        raise PemError("holds no private key; give --key KEY.pem", file=str(cert))
    if not same_public_key(bundle.leaf, private):
        raise PemError(
            f"the private key does not match the certificate {cert} "
            f"({bundle.leaf.subject.rfc4514_string() or 'no subject'})",
            file=str(key if key is not None else cert),
        )
    return NewCertificate(leaf=bundle.leaf, chain=bundle.chain, key=private, source=str(cert))


@guarded
@fleet_options(changes=True)
def push_cert(
    purpose: str = typer.Option(..., "--purpose", help="Comma list: HTTPS, SIP, 802.1X, Audit, …"),
    cert: Path | None = typer.Option(
        None, "--cert", help="One PEM bundle (leaf first or not, chain, maybe the key) for all."
    ),
    key: Path | None = typer.Option(None, "--key", help="The private key of --cert."),
    cert_dir: Path | None = typer.Option(
        None, "--dir", help="Per device: DIR/<device>.pem (+ chain) and DIR/<device>.key.pem."
    ),
    ca_file: list[Path] | None = typer.Option(
        None, "--ca-file",
        help="CA certificate(s) the chain must verify to (HTTPS also uses the verify: CA file).",
    ),
    key_passphrase: str | None = typer.Option(
        None, "--key-passphrase", help="Reference to the key files' passphrase, if encrypted."
    ),
    *,
    common: Common,
) -> None:
    """Install a certificate for --purpose on each device (make-before-break)."""
    if (cert is None) == (cert_dir is None):
        raise InputError("give either --cert FILE (one certificate for all) or --dir DIR")
    passphrase = parse_secret_ref(key_passphrase).resolve() if key_passphrase else None
    _, devices = select(common)
    if cert is not None:
        shared = load_new_certificate(cert, key, passphrase)  # checked before any device

        def source(name: str) -> NewCertificate:
            return shared
    else:
        assert cert_dir is not None
        missing = [d.name for d in devices if not (cert_dir / f"{d.name}.pem").exists()]
        if missing:
            raise InputError(f"{cert_dir}: no certificate for {', '.join(missing[:5])}"
                             + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
        loaded = {
            d.name: load_new_certificate(
                cert_dir / f"{d.name}.pem",
                (cert_dir / f"{d.name}.key.pem")
                if (cert_dir / f"{d.name}.key.pem").exists() else None,
                passphrase,
            )
            for d in devices
        }

        def source(name: str) -> NewCertificate:
            return loaded[name]

    anchors = [c for f in ca_file or () for c in parse_pem_certificates(_read(f), source=str(f))]
    plan = PushCert(purposes=parse_purposes(purpose), source=source, anchors=anchors)
    run = execute(plan, devices, common, journal_args={"purposes": list(plan.purposes)})
    finish(run, common)
