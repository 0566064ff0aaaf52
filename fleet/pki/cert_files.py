"""fleet.pki.cert_files — the certificates ``push-cert`` installs, read from files.

One bundle (leaf + chain, maybe with its key, and a separate key file if not) for every
device, or one per device from a folder: ``<device>.pem`` (with its chain) and
``<device>.key.pem`` if the key is not in the bundle, as ``certfleet csr`` writes keys and a CA
returns certificates. Every file is read and checked (key matches certificate) before any
device is contacted; errors name the file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography import x509

from ..errors import InputError, PemError
from ..files import read_file
from ..inventory import Device
from ..plans.install import NewCertificate
from ..secrets import Secret
from .bundle import parse_bundle
from .certs import parse_pem_certificates
from .keys import load_key_pem, same_public_key

__all__ = ["certificate_source", "load_anchors", "load_new_certificate"]


def _read(path: Path) -> bytes:
    try:
        return read_file(path)  # never blocks on a FIFO, never reads /dev/zero, capped
    except FileNotFoundError:
        raise PemError("does not exist", file=str(path)) from None
    except OSError as exc:
        raise PemError(f"cannot be read: {exc.strerror}", file=str(path)) from exc


def load_new_certificate(cert: Path, key: Path | None, passphrase: Secret | None) -> NewCertificate:
    """A bundle (leaf + chain, maybe with its key) and, if separate, its key file."""
    bundle = parse_bundle(_read(cert), source=str(cert))
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


def certificate_source(
    devices: Sequence[Device], *, cert: Path | None = None, key: Path | None = None,
    folder: Path | None = None, passphrase: Secret | None = None,
) -> Callable[[str], NewCertificate]:
    """Device name → its new certificate: ``cert`` (+ ``key``) for all, or one per device
    from ``folder``. Everything is loaded here."""
    if (cert is None) == (folder is None):
        raise InputError("give either --cert FILE (one certificate for all) or --dir DIR")
    if cert is not None:
        shared = load_new_certificate(cert, key, passphrase)
        return lambda name: shared
    assert folder is not None
    missing = [d.name for d in devices if not (folder / f"{d.name}.pem").exists()]
    if missing:
        raise InputError(f"{folder}: no certificate for {', '.join(missing[:5])}"
                         + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
    loaded = {}
    for device in devices:
        own_key = folder / f"{device.name}.key.pem"
        loaded[device.name] = load_new_certificate(
            folder / f"{device.name}.pem", own_key if own_key.exists() else None, passphrase)
    return loaded.__getitem__


def load_anchors(paths: Sequence[Path]) -> list[x509.Certificate]:
    """The CA certificates in ``paths`` (``--ca-file``)."""
    return [c for path in paths for c in parse_pem_certificates(_read(path), source=str(path))]
