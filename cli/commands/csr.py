"""certfleet csr — a new key and CSR per device, made here (no device is contacted)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from cli import render, render_pki
from cli.options import Common, InventoryOpt, LimitOpt, OutputFormat, OutputOpt, session_of
from cli.runtime import guarded, select
from fleet.errors import InputError
from fleet.inventory import Device, RenderedCertificate
from fleet.pki.certs import oneline_name
from fleet.pki.csr import build_csr, csr_pem, san_strings
from fleet.pki.keys import (
    KEY_KINDS,
    KeyFactory,
    key_to_pem,
    public_key_id,
    write_atomic,
    write_private_key,
)
from fleet.secrets import Secret, parse_secret_ref


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
) -> list[render_pki.CsrRow]:
    """Keys on every core at once; each is written (0600) with its CSR as soon as it is made."""
    async with KeyFactory() as factory:

        async def one(device: Device, rendered: RenderedCertificate,
                      kind: str) -> render_pki.CsrRow:
            key = await factory.generate(kind)
            csr = build_csr(key, rendered)
            kfile, cfile = key_path(out, device.name), csr_path(out, device.name)
            try:
                write_private_key(kfile, key_to_pem(key, passphrase))
                write_atomic(cfile, csr_pem(csr), mode=0o644)
            except OSError as exc:
                raise InputError(f"cannot write {kfile}: {exc.strerror or exc}") from None
            return render_pki.CsrRow(
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


@guarded
def csr(
    ctx: typer.Context,
    out: Annotated[
        Path,
        typer.Option("--out", help="Folder for DEVICE.key.pem and DEVICE.csr.pem.",
                     show_default=False),
    ],
    inventory: InventoryOpt = None,
    limit: LimitOpt = None,
    key: str | None = typer.Option(
        None, "--key",
        help=f"Key type for every device: {', '.join(KEY_KINDS)} "
        "(default: the inventory's certificate template).",
        show_default=False,
    ),
    passphrase: str | None = typer.Option(
        None, "--passphrase",
        help="Encrypt the key files with the passphrase at env:VAR, keyring:SERVICE/USER or "
        "file:PATH (never the passphrase itself).",
        show_default=False,
    ),
    force: bool = typer.Option(
        False, "--force", help="Replace key and CSR files that are already in --out."
    ),
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Generate a key (on all cores) and a CSR per device from the inventory's certificate
    template. Local only: no device is contacted. Key files are mode 0600."""
    if key is not None and key not in KEY_KINDS:
        raise InputError(f"--key {key!r} is not one of {', '.join(KEY_KINDS)}")
    secret: Secret | None = None
    if passphrase is not None:
        try:
            secret = parse_secret_ref(passphrase).resolve_passphrase()
        except InputError as exc:
            raise InputError(f"--passphrase: {exc}") from None
    _, devices = select(Common(inventory=inventory, limit=limit, session=session_of(ctx)))
    jobs = []
    for device in devices:  # every template renders before any key is made
        rendered = device.certificate.render(device)
        jobs.append((device, rendered, key or rendered.key))
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is not a directory")
    if not force:
        existing = [p for d in devices for p in (key_path(out, d.name), csr_path(out, d.name))
                    if p.exists()]
        if existing:
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
    before = {p for d in devices for p in (key_path(out, d.name), csr_path(out, d.name))
              if p.exists()}
    try:
        rows = asyncio.run(_make_all(jobs, out, secret))
    except BaseException:
        # all or nothing: the files this run made go again (no CSR of theirs has left)
        for device in devices:
            for path in (key_path(out, device.name), csr_path(out, device.name)):
                if path not in before:
                    with contextlib.suppress(OSError):
                        path.unlink()
        raise
    if output is OutputFormat.json:
        render.emit_json(render_pki.csr_document(rows))
    else:
        render_pki.csr_table(rows)
    if secret is None:
        render.warning(
            f"the {len(rows)} key file(s) are not encrypted (mode 0600); "
            "give --passphrase to encrypt them"
        )
