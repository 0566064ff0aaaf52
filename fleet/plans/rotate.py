"""fleet.plans.rotate — key → CSR → sign → push → activate → verify → clean up.

Acts only on devices whose certificate for the purposes is due (missing, expiring within
``renew_before``, or ``force``). The private key is generated locally (on all cores, overlapped
with other devices' network work) and committed to the journal, encrypted, *before* its CSR
goes to the signer. A rotation that was interrupted after that point is finished with the same
key: nothing is generated twice and nothing is lost.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..durations import format_duration, parse_duration
from ..errors import CertificateCheckError, DeviceSkipped, InputError, PemError
from ..inventory import Device
from ..journal import Journal, KeyRecord
from ..pki.bundle import parse_bundle
from ..pki.checks import check_for_device
from ..pki.csr import build_csr
from ..pki.keys import KeyFactory, PrivateKey, key_to_pem, load_key_pem
from ..pki.signers.base import SignedCertificate, Signer, SigningRequest
from ..pki.signers.factory import SignerSpec, build_signer
from ..results import Change
from ..secrets import Secret, parse_secret_ref
from ..xapi.commands import CertificateInfo
from .base import DeviceContext
from .install import (
    NewCertificate,
    active_leaves,
    certfleet_trust,
    check_certfleet_keeps_trust,
    install_certificate,
    require_purposes,
)
from .renewal import self_renewing

__all__ = ["DEFAULT_JOURNAL_PASSPHRASE", "Rotate", "RotateState", "check_journal_passphrase",
           "journal_passphrase"]

DEFAULT_JOURNAL_PASSPHRASE = "env:CERTFLEET_JOURNAL_PASSPHRASE"

#: journal step naming the certificates a new key's rotation replaces (comma-separated)
SUPERSEDES = "supersedes"


def check_journal_passphrase(
    journal: Journal, passphrase: Secret, devices: Sequence[str], purposes: Sequence[str]
) -> None:
    """Before any device is contacted: the passphrase decrypts a key already in the journal
    (one this run would reuse, else the newest). A mistyped one would fail every device with
    a pending key and put every new key under a second passphrase."""
    record = journal.sample_key(devices, purposes)
    if record is None:
        return
    try:
        load_key_pem(record.key_pem_encrypted, passphrase, source=f"journal key {record.id}",
                     own_key=True)
    except PemError:
        raise InputError(
            f"the journal passphrase does not decrypt the keys already in the journal "
            f"{journal.path} (key {record.id}, {record.device}, run {record.run_id}); give the "
            "passphrase they were made with (CERTFLEET_JOURNAL_PASSPHRASE or "
            "--journal-passphrase), or use another --journal"
        ) from None


@dataclass
class RotateState:
    current: list[CertificateInfo]
    active: dict[str, str]  # purpose -> fingerprint
    pending: KeyRecord | None = None


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def journal_passphrase(ref: str) -> Secret:
    """The passphrase that encrypts new keys in the journal, from its reference."""
    try:
        return parse_secret_ref(ref).resolve_passphrase()
    except InputError as exc:
        raise InputError(
            f"the journal keeps every new private key encrypted and needs a passphrase: {exc}"
        ) from exc


@dataclass
class Rotate:
    """Rotate the certificates for ``purposes`` where due.

    ``signer`` says how to sign (a :class:`SignerSpec`, built in :meth:`open`, in the run's
    event loop, and closed in :meth:`aclose`) or is a ready :class:`Signer`.
    ``journal_passphrase`` is a reference (``env:``, ``keyring:``, ``file:``) to the
    passphrase that encrypts new keys in the journal; it is resolved when the plan is made.
    The plan is written to the journal (:meth:`to_journal`) and rebuilt from it
    (:meth:`from_journal`) by ``runs resume``.
    """

    purposes: tuple[str, ...]
    signer: SignerSpec | Signer
    journal_passphrase: str = DEFAULT_JOURNAL_PASSPHRASE
    renew_before: dt.timedelta = dt.timedelta(days=30)
    force: bool = False
    #: rotate even a certificate the device renews by itself under a SCEP profile
    override_profile: bool = False
    #: CAs a new chain must verify to besides the signer's; self-signed certs in a chain count
    anchors: tuple[x509.Certificate, ...] = ()
    name: str = "rotate"
    _passphrase: Secret = field(init=False, repr=False)
    _keys: KeyFactory | None = field(default=None, init=False, repr=False)
    _built: Signer | None = field(default=None, init=False, repr=False)
    _signer_anchors: tuple[x509.Certificate, ...] = field(default=(), init=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.signer, SignerSpec):
            self.signer.validate()  # bad signer options: an input error before anything runs
        self._passphrase = journal_passphrase(self.journal_passphrase)

    def to_journal(self) -> dict[str, Any]:
        """What rebuilds the plan; a signer given as an object is not recorded (``signer``
        None: such a run is taken up by running it again, not by ``runs resume``)."""
        spec = self.signer if isinstance(self.signer, SignerSpec) else None
        return {
            "purposes": list(self.purposes),
            "signer": spec.to_json() if spec is not None else None,
            "renew_before": format_duration(self.renew_before),
            "force": self.force,
            "override_profile": self.override_profile,
            "journal_passphrase": self.journal_passphrase,
        }

    @classmethod
    def from_journal(cls, args: Mapping[str, Any]) -> Rotate:
        if args.get("signer") is None:
            raise InputError("this rotation's signer was given as a Python object, which the "
                             "journal does not keep: run the rotation again to finish it")
        return cls(
            purposes=tuple(args["purposes"]),
            signer=SignerSpec.from_json(args["signer"]),
            journal_passphrase=args["journal_passphrase"],
            renew_before=parse_duration(args["renew_before"]),
            force=bool(args["force"]),
            override_profile=bool(args.get("override_profile", False)),
        )

    def check(self, devices: Sequence[Device], journal: Journal | None) -> None:
        """Before any device is contacted: there is a journal, and the passphrase opens it."""
        if journal is None:
            raise InputError("rotate needs a journal to keep the new keys safe")
        check_journal_passphrase(journal, self._passphrase, [d.name for d in devices],
                                 self.purposes)

    async def open(self) -> None:
        """Build the signer (in the run's event loop: a SCEP signer keeps a connection) and
        the key factory."""
        if isinstance(self.signer, SignerSpec):
            self._built, self._signer_anchors = await build_signer(self.signer)
        else:
            self._built = self.signer
        self._keys = KeyFactory()

    async def aclose(self) -> None:
        if self._keys is not None:
            self._keys.close()
            self._keys = None
        built, self._built = self._built, None
        closer = getattr(built, "aclose", None)
        if closer is not None and built is not self.signer:
            await closer()

    async def _generate(self, kind: str) -> PrivateKey:
        if self._keys is None:
            raise RuntimeError("Rotate.open() was not called")
        return await self._keys.generate(kind)

    @property
    def _signer(self) -> Signer:
        if self._built is None:
            raise RuntimeError("Rotate.open() was not called")
        return self._built

    async def read(self, ctx: DeviceContext) -> RotateState:
        require_purposes(ctx, self.purposes)
        current = await ctx.xapi.services_show()
        active = active_leaves(current, self.purposes)
        by_fp = {c.fingerprint: c for c in current}
        ctx.fact("active", {purpose: by_fp[fp].to_dict(ctx.now) for purpose, fp in active.items()})
        ctx.result.fingerprints_before = sorted(set(active.values()))
        if not self.override_profile:
            profiles = await ctx.xapi.profiles_list(tolerant=True)
            if profiles:
                owned = self_renewing(current, await ctx.xapi.ca_show(), profiles)
                mine = {p: owned[fp] for p, fp in active.items() if fp in owned}
                if mine:
                    purpose, profile = next(iter(mine.items()))
                    raise DeviceSkipped(
                        f"the {purpose} certificate is renewed by the device itself under its "
                        f"SCEP renewal profile for CA {profile.fingerprint} ({profile.url}); "
                        "certfleet does not fight it (--override-profile to rotate anyway)",
                        device=ctx.device.name,
                    )
        pending = None
        if ctx.journal is not None:
            pending = ctx.journal.open_key(ctx.device.name, self.purposes)
        return RotateState(current=current, active=active, pending=pending)

    def _due(self, ctx: DeviceContext, state: RotateState) -> str | None:
        if state.pending is not None:
            return f"finishing the rotation begun in run {state.pending.run_id}"
        if self.force:
            return "forced"
        by_fp = {c.fingerprint: c for c in state.current}
        soonest: float | None = None
        for purpose in self.purposes:
            fp = state.active.get(purpose)
            if fp is None:
                return f"no certificate in use for {purpose}"
            days = by_fp[fp].days_left(ctx.now)
            if days is None or days * 86400 < self.renew_before.total_seconds():
                return f"{purpose} certificate expires in {days:.0f} days" if days is not None \
                    else f"{purpose} certificate has no readable expiry"
            soonest = days if soonest is None else min(soonest, days)
        # not due: say why, so a quiet nightly run is not mistaken for one that did nothing
        if soonest is not None:
            ctx.result.message = (f"not due: {soonest:.0f} days left, "
                                  f"renew-before {format_duration(self.renew_before)}")
        return None

    def diff(self, ctx: DeviceContext, state: RotateState) -> list[Change]:
        reason = self._due(ctx, state)
        if reason is None:
            return []
        ctx.result.message = ""
        return [Change("cert.rotate", ",".join(self.purposes),
                       f"{reason} → new key, signed by {self._signer.name}")]

    async def apply(
        self, ctx: DeviceContext, state: RotateState, changes: list[Change]
    ) -> None:
        device = ctx.device
        journal = ctx.journal
        if journal is None:
            raise InputError("rotate needs a journal to keep the new keys safe")
        if state.pending is not None:
            key = await self._reuse(ctx, journal, state.pending)
        else:
            key = await self._new_key(ctx, journal, state)
        if key.signed is None:
            journal.update_key(key.id, "submitted")
            key.signed = await self._signer.sign(
                SigningRequest(device=device, csr=key.csr, key=key.key, purposes=self.purposes,
                               metadata={"run_id": ctx.run_id})
            )
            journal.update_key(
                key.id, "signed",
                cert_pem="".join(_pem(c) for c in (key.signed.cert, *key.signed.chain)),
                step=("signed", f"by {self._signer.name}"),  # ctx.step's, in the same commit
            )
        new = self._checked(ctx, journal, key.id, key.key, key.signed)
        journal.update_key(key.id, "uploaded")
        notes = await install_certificate(ctx, new, self.purposes, state.current,
                                          key.superseded)
        journal.update_key(key.id, "done")
        changes[0].applied = True
        if notes:
            ctx.result.message = "; ".join(notes)

    async def _reuse(self, ctx: DeviceContext, journal: Journal, record: KeyRecord) -> _Key:
        """A key an earlier run made and journaled (maybe signed already): finished with it."""
        key = _Key(
            id=record.id,
            # the journal's own key (made by certfleet, kept encrypted): resuming 1,000 devices
            # would otherwise spend OpenSSL's RSA check, ~40 ms of one core, on every key
            key=load_key_pem(record.key_pem_encrypted, self._passphrase,
                             source=f"journal key {record.id}", own_key=True),
            csr=x509.load_pem_x509_csr(record.csr_pem.encode()),
            # what the run that made the key set out to replace (its new certificate may be
            # in use already, so this run's device list no longer shows the old ones)
            superseded=[
                fp
                for step in journal.steps_of(record.run_id, ctx.device.name)
                if step["step"] == SUPERSEDES
                for fp in step["detail"].split(",")
                if fp
            ],
        )
        ctx.step("key reused", f"journal key {key.id} from run {record.run_id}")
        if record.cert_pem:
            bundle = parse_bundle(record.cert_pem.encode(), source=f"journal key {key.id}")
            key.signed = SignedCertificate(bundle.leaf, bundle.chain)
        return key

    async def _new_key(self, ctx: DeviceContext, journal: Journal, state: RotateState) -> _Key:
        device = ctx.device
        rendered = device.certificate.render(device)
        private = await self._generate(rendered.key)
        csr = build_csr(private, rendered)
        public = private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        # Durable before the CSR leaves the machine: a crash from here on loses no key.
        key_id = journal.store_key(
            run_id=ctx.run_id,
            device=device.name,
            purposes=self.purposes,
            key_kind=rendered.key,
            key_pem_encrypted=key_to_pem(private, self._passphrase),
            public_sha256=hashlib.sha256(public).hexdigest(),
            csr_pem=csr.public_bytes(serialization.Encoding.PEM).decode("ascii"),
            # ctx.step's two steps, in the key's commit
            steps=lambda key_id: [
                ("key generated", f"{rendered.key}, journal key {key_id}"),
                (SUPERSEDES, ",".join(sorted(set(state.active.values())))),
            ],
        )
        return _Key(id=key_id, key=private, csr=csr)

    def _checked(self, ctx: DeviceContext, journal: Journal, key_id: int, key: PrivateKey,
                 signed: SignedCertificate) -> NewCertificate:
        """The signed certificate, checked for the device before anything is sent to it."""
        device = ctx.device
        source = f"certificate from signer {self._signer.name}"
        anchors = [*self.anchors, *self._signer_anchors,
                   *(c for c in signed.chain if c.issuer == c.subject),
                   *(certfleet_trust(device) if "HTTPS" in self.purposes else ())]
        try:
            check_for_device(device, signed.cert, signed.chain, key, trusted=anchors,
                             purposes=self.purposes, now=ctx.now, source=source)
        except CertificateCheckError as exc:
            # Unfit as signed: reusing it would fail the same way in every later run, even
            # after the template is fixed. Nothing was sent to the device; the next rotate
            # makes a new key. (A certificate certfleet itself would not trust afterwards,
            # below, is fit: once the inventory trusts its CA it is used as it is.)
            journal.abandon_key(key_id, f"the signed certificate is unfit: {exc.message}")
            ctx.step("key abandoned", f"journal key {key_id}: a new key is made next time")
            raise
        if "HTTPS" in self.purposes:
            check_certfleet_keeps_trust(device, signed.cert, signed.chain)
        return NewCertificate(leaf=signed.cert, chain=tuple(c for c in signed.chain
                                                             if c.issuer != c.subject),
                              key=key, source=source)


@dataclass
class _Key:
    """The key a rotation installs a certificate for, journaled under ``id``."""

    id: int
    key: PrivateKey
    csr: x509.CertificateSigningRequest
    superseded: list[str] = field(default_factory=list)
    signed: SignedCertificate | None = None
