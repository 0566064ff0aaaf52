"""fleet.pki.csr_batch — a new key and CSR per device, written to a folder (no device is
contacted): what ``certfleet csr`` does.

All or nothing: every template renders, the overwrite policy is checked and every file name
fits the file system before any key is made; keys are made on every core at once, each written
(mode 0600) with its CSR as soon as it is made; if anything fails, the files this batch made
are removed again (none of their CSRs has left).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .._loop import run as run_loop
from ..errors import InputError
from ..inventory import Device, RenderedCertificate
from ..secrets import Secret
from .certs import oneline_name
from .csr import build_csr, csr_pem, san_strings
from .keys import (
    KEY_KINDS,
    KeyFactory,
    key_to_pem,
    public_key_id,
    write_atomic,
    write_private_key,
)

__all__ = ["CsrRow", "check_out_files", "csr_path", "key_path", "make_csrs"]


@dataclass(frozen=True)
class CsrRow:
    """One device's new key and CSR, as ``certfleet csr`` reports it."""

    device: str
    key_kind: str
    subject: str
    sans: tuple[str, ...]
    key_file: Path
    csr_file: Path
    public_key_sha256: str
    encrypted: bool


def key_path(out: Path, device: str) -> Path:
    return out / f"{device}.key.pem"


def csr_path(out: Path, device: str) -> Path:
    return out / f"{device}.csr.pem"


#: what write_atomic adds to a file name for its temporary file: "." + ".<12 hex>.tmp"
_TMP_EXTRA = 1 + 1 + 12 + 4


def _limits(folder: Path) -> tuple[int, int]:
    """NAME_MAX and PATH_MAX where ``folder`` is (or will be made)."""
    probe = folder.absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    limits = []
    for name, default in (("PC_NAME_MAX", 255), ("PC_PATH_MAX", 4096)):
        try:
            limits.append(os.pathconf(probe, name))
        except (OSError, ValueError):
            limits.append(default)
    return limits[0], limits[1]


def check_out_files(out: Path, devices: Sequence[Device]) -> None:
    """Before any key is made: every device's files can be written to ``out`` (names and
    paths within the file system's limits). One InputError naming the first device whose
    files cannot be; nothing is written for anyone."""
    name_max, path_max = _limits(out)
    folder = len(os.fsencode(str(out.absolute())))
    for device in devices:
        for path in (key_path(out, device.name), csr_path(out, device.name)):
            size = len(os.fsencode(path.name)) + _TMP_EXTRA
            if size > name_max or folder + 1 + size >= path_max:
                raise InputError(
                    f"{device.name}: the file name {path.name!r} is too long for {out} "
                    f"(at most {name_max - _TMP_EXTRA} bytes here); nothing was written"
                )


async def _make_all(
    jobs: Sequence[tuple[Device, RenderedCertificate, str]],
    out: Path,
    passphrase: Secret | None,
) -> list[CsrRow]:
    """Keys on every core at once; each is written (0600) with its CSR as soon as it is made."""
    async with KeyFactory() as factory:

        async def one(device: Device, rendered: RenderedCertificate,
                      kind: str) -> CsrRow:
            key = await factory.generate(kind)
            csr = build_csr(key, rendered)
            kfile, cfile = key_path(out, device.name), csr_path(out, device.name)
            try:
                write_private_key(kfile, key_to_pem(key, passphrase))
                write_atomic(cfile, csr_pem(csr), mode=0o644)
            except OSError as exc:
                raise InputError(f"cannot write {kfile}: {exc.strerror or exc}") from None
            return CsrRow(
                device=device.name,
                key_kind=kind,
                subject=oneline_name(csr.subject),
                sans=tuple(san_strings(csr)),
                key_file=kfile,
                csr_file=cfile,
                public_key_sha256=public_key_id(csr),
                encrypted=passphrase is not None,
            )

        return list(await asyncio.gather(*(one(*job) for job in jobs)))


def make_csrs(devices: Sequence[Device], out: Path, *, key: str | None = None,
              passphrase: Secret | None = None, force: bool = False) -> list[CsrRow]:
    """A key (``key``, else the template's kind) and CSR per device in ``out``; an existing
    file is replaced only with ``force`` (it could be a key whose CSR is out for signing)."""
    if key is not None and key not in KEY_KINDS:
        raise InputError(f"--key {key!r} is not one of {', '.join(KEY_KINDS)}")
    jobs = []
    for device in devices:  # every template renders before any key is made
        rendered = device.certificate.render(device)
        jobs.append((device, rendered, key or rendered.key))
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is not a directory")
    files = [p for d in devices for p in (key_path(out, d.name), csr_path(out, d.name))]
    existing = [p for p in files if p.exists()]
    if existing and not force:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise InputError(
            f"{existing[0]} exists{more}: replacing it could lose a key whose CSR is out "
            "for signing; give --force to replace, or another --out"
        )
    check_out_files(out, devices)
    try:
        out.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create {out}: {exc.strerror or exc}") from None
    before = set(existing)
    try:
        return run_loop(_make_all(jobs, out, passphrase))
    except BaseException:
        for path in files:  # all or nothing: the files this batch made go again
            if path not in before:
                with contextlib.suppress(OSError):
                    path.unlink()
        raise
