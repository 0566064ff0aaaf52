"""fleet.plans.install — put a service certificate on a device, make-before-break.

Shared by ``push-cert`` (certificate from files) and ``rotate`` (certificate from a signer):

1. upload certificate, chain and key (``Services Add``; the key travels encrypted with a
   one-time passphrase given as ``PrivateKeyPassword``);
2. activate it for every purpose (RoomOS keeps one certificate per purpose, so this is the
   moment the old one stops serving);
3. verify: ``Services Show`` lists it in use for each purpose, and for HTTPS a fresh TLS
   handshake to the device must present the new fingerprint;
4. only then delete the superseded certificates — those that were active for one of these
   purposes and are no longer in use for anything. A certificate certfleet did not supersede,
   or one still in use for another purpose, is never deleted.

On any failure after the upload, the old certificate is re-activated for every purpose it had,
the new one is deactivated and removed, and the error is reported with what was rolled back.
That includes a change cut off before the new certificate was verified (the device's time
budget ran out, or the run was stopped at once): the rollback then runs anyway, for at most
``ROLLBACK_TIMEOUT`` seconds, and the device's message says what it did.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import secrets as _stdlib_secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from ..errors import CertificateCheckError, DeviceError, InputError, VerifyError
from ..inventory import Device
from ..pki.bundle import bundle_pem
from ..pki.certs import fingerprint
from ..pki.keys import key_to_pem
from ..secrets import Secret
from ..xapi.commands import PURPOSES, CertificateInfo
from .base import DeviceContext

__all__ = [
    "ROLLBACK_TIMEOUT",
    "NewCertificate",
    "activate_verified",
    "active_leaves",
    "certfleet_trust",
    "check_certfleet_keeps_trust",
    "install_certificate",
    "parse_purposes",
    "require_purposes",
]


#: seconds a rollback may take when the change was cut off (time budget, a stop at once)
ROLLBACK_TIMEOUT = 20.0


@dataclass(frozen=True)
class NewCertificate:
    leaf: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    key: CertificateIssuerPrivateKeyTypes
    source: str  # where it came from, for messages: a file, "local-ca", ...

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.leaf)


_ACTIVATE = ("Security", "Certificates", "Services", "Activate")


def parse_purposes(text: str) -> tuple[str, ...]:
    """``"https, 802.1x"`` → ``("HTTPS", "802.1X")``: the xAPI's spelling, each once."""
    by_lower = {p.lower(): p for p in PURPOSES}
    out: list[str] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        purpose = by_lower.get(item.lower())
        if purpose is None:
            raise InputError(f"--purpose {item!r} is not one of {', '.join(PURPOSES)}")
        if purpose not in out:
            out.append(purpose)
    if not out:
        raise InputError("--purpose is empty")
    return tuple(out)


def require_purposes(ctx: DeviceContext, purposes: Sequence[str]) -> None:
    """Skip the device when its release cannot activate a certificate for one of the purposes
    (``HttpProxy`` is not a Purpose before 11.x, for example)."""
    for purpose in purposes:
        ctx.require(f"a certificate for {purpose}", _ACTIVATE,
                    {"Fingerprint": "0" * 40, "Purpose": purpose})


def active_leaves(certs: Sequence[CertificateInfo], purposes: Sequence[str]) -> dict[str, str]:
    """purpose → fingerprint of the leaf certificate in use for it.

    An uploaded chain lists its intermediates as separate entries with the same ``UsedFor``
    (reference §4.1), so an entry that issued another entry in use for the same purpose is
    taken as an intermediate, not as the certificate in use.
    """
    found: dict[str, str] = {}
    for purpose in purposes:
        candidates = [c for c in certs if purpose in c.purposes]
        issuers = {c.issuer for c in candidates if c.issuer != c.subject}
        leaves = [c for c in candidates if c.subject not in issuers] or candidates
        if leaves:
            found[purpose] = leaves[0].fingerprint
    return found


def _ca_file(path: str) -> tuple[x509.Certificate, ...]:
    """The CAs in ``path``, read again when the file changed (size, mtime or inode)."""
    info = os.stat(path)
    return _ca_file_version(path, (info.st_mtime_ns, info.st_size, info.st_ino))


@functools.lru_cache(maxsize=64)
def _ca_file_version(path: str, stamp: tuple[int, int, int]) -> tuple[x509.Certificate, ...]:
    del stamp  # part of the cache key only
    return tuple(x509.load_pem_x509_certificates(Path(path).read_bytes()))


def certfleet_trust(device: Device) -> tuple[x509.Certificate, ...]:
    """The CAs certfleet itself verifies this device's HTTPS with (``verify: ca:FILE``)."""
    if device.verify.mode != "ca" or device.verify.ca_path is None:
        return ()
    return _ca_file(str(device.verify.ca_path))


def check_certfleet_keeps_trust(
    device: Device, leaf: x509.Certificate, chain: Sequence[x509.Certificate]
) -> None:
    """Refuse a new HTTPS certificate that certfleet itself would no longer trust: after it is
    activated, every later run would fail TLS verification against this device."""
    if device.verify.mode == "pin":
        raise CertificateCheckError(
            "the inventory pins this device's current HTTPS certificate (verify: pin:); a new "
            "certificate breaks the pin — switch the device to verify: ca:FILE first",
            device=device.name,
        )
    trusted = certfleet_trust(device)
    if device.verify.mode != "ca":
        return  # system store: checked by the handshake after activation; insecure: nothing
    names = {c.subject for c in trusted}
    top = chain[-1] if chain else leaf
    if top.issuer not in names and top.subject not in names:
        raise CertificateCheckError(
            f"certfleet verifies this device with {device.verify}, which does not hold the CA "
            f"of the new certificate ({top.issuer.rfc4514_string()}); add that CA to the file "
            "first, or certfleet could not reach the device afterwards",
            device=device.name,
        )


async def install_certificate(
    ctx: DeviceContext,
    new: NewCertificate,
    purposes: Sequence[str],
    current: Sequence[CertificateInfo],
    superseded: Sequence[str] = (),
) -> list[str]:
    """Upload, then :func:`activate_verified`. Returns notes for the report."""
    new_fp = new.fingerprint
    passphrase = Secret(_stdlib_secrets.token_urlsafe(24))
    key_pem = key_to_pem(new.key, passphrase, one_time=True).decode("ascii")
    if not any(c.fingerprint == new_fp for c in current):
        await ctx.xapi.services_add(bundle_pem(new.leaf, new.chain, key_pem), passphrase)
        ctx.step("uploaded", new_fp)
    return await activate_verified(ctx, new_fp, purposes, current, superseded)


async def activate_verified(
    ctx: DeviceContext,
    new_fp: str,
    purposes: Sequence[str],
    current: Sequence[CertificateInfo],
    superseded: Sequence[str] = (),
) -> list[str]:
    """Activate a certificate already on the device, verify, clean up what it superseded.

    ``current`` is the device's list from before the new certificate arrived. On failure the
    old certificates are re-activated and the new one removed, and the error says so.
    ``superseded``: more fingerprints this change replaces, known from an earlier run of it
    (a resumed rotation whose new certificate was already in use); like the ones active in
    ``current``, each is deleted only when no longer in use for anything.
    """
    xapi = ctx.xapi
    before = active_leaves(current, purposes)
    try:
        for purpose in purposes:
            await xapi.services_activate(new_fp, purpose)
            ctx.step("activated", f"{purpose} {new_fp}")
        listing = await _verify_in_use(ctx, new_fp, purposes)
        ctx.step("verified", new_fp)
    except (Exception, asyncio.CancelledError) as exc:
        # Cancelled too: out of the device's time budget, or a run stopped at once. The new
        # certificate may be in use unverified, so the rollback runs anyway, bounded.
        try:
            async with asyncio.timeout(ROLLBACK_TIMEOUT):
                rolled = await _roll_back(ctx, new_fp, before, purposes)
        except TimeoutError:
            rolled = f"ROLLBACK INCOMPLETE: not done within {ROLLBACK_TIMEOUT:g}s"
        if isinstance(exc, DeviceError):
            exc.message = f"{exc.message}; {rolled}"
        elif isinstance(exc, asyncio.CancelledError):
            ctx.result.message = f"cut off before the new certificate was verified; {rolled}"
        raise
    notes = await _clean_up(ctx, new_fp, set(before.values()) | set(superseded), listing)
    ctx.result.fingerprints_before = sorted(set(before.values()))
    ctx.result.fingerprints_after = [new_fp]
    return notes


async def _verify_in_use(
    ctx: DeviceContext, new_fp: str, purposes: Sequence[str]
) -> list[CertificateInfo]:
    """VerifyError unless the device shows ``new_fp`` in use for every purpose and, for
    HTTPS, its web server presents it. Returns the device's list as read to verify."""
    listing = await ctx.xapi.services_show()
    in_use = active_leaves(listing, purposes)
    missing = [p for p in purposes if in_use.get(p) != new_fp]
    if missing:
        raise VerifyError(
            f"activated {new_fp} but the device does not show it in use for "
            + ", ".join(missing)
        )
    if "HTTPS" in purposes and ctx.peer_certificate is not None:
        served = hashlib.sha1(await ctx.peer_certificate()).hexdigest()
        if served != new_fp:
            raise VerifyError(
                f"the device's HTTPS server still presents {served}, not the new {new_fp} "
                "(RoomOS may need its web server restarted)"
            )
    return listing


async def _clean_up(ctx: DeviceContext, new_fp: str, replaced: set[str],
                   listing: Sequence[CertificateInfo]) -> list[str]:
    """Delete what this change superseded, and nothing else: a replaced certificate still in
    use for something is kept, with a note saying so. ``listing`` is the device's list as the
    verification read it, a moment ago, with nothing sent to the device since (reading it
    again was a third Services Show per device)."""
    notes: list[str] = []
    by_fp = {c.fingerprint: c for c in listing}
    for old_fp in sorted(replaced - {new_fp}):
        old = by_fp.get(old_fp)
        if old is None:
            continue
        if old.purposes:
            notes.append(f"kept {old_fp}: still in use for {', '.join(old.purposes)}")
            continue
        await ctx.xapi.services_delete(old_fp)
        ctx.step("deleted", old_fp)
    return notes


async def _roll_back(
    ctx: DeviceContext, new_fp: str, before: dict[str, str], purposes: Sequence[str]
) -> str:
    """Best effort: old certificate back in service, the new one out. Says what it did."""
    done: list[str] = []
    failed: list[str] = []
    for purpose in purposes:
        old_fp = before.get(purpose)
        try:
            if old_fp and old_fp != new_fp:
                await ctx.xapi.services_activate(old_fp, purpose)
                done.append(f"re-activated {old_fp} for {purpose}")
            else:
                await ctx.xapi.services_deactivate(new_fp, purpose)
        except Exception as exc:
            failed.append(f"{purpose}: {exc}")
    if new_fp not in before.values():
        try:
            await ctx.xapi.services_delete(new_fp)
            done.append(f"removed the new {new_fp}")
        except Exception as exc:
            failed.append(f"delete {new_fp}: {exc}")
    ctx.step("rolled back", "; ".join(done + failed))
    if done:
        text = "rolled back: " + "; ".join(done)
    elif failed:  # every step failed (the device went away): say so, not "nothing to do"
        text = "not rolled back"
    else:
        text = "rolled back: nothing was active before"
    if failed:
        text += "; ROLLBACK INCOMPLETE: " + "; ".join(failed)
    return text
