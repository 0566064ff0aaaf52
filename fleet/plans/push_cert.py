"""fleet.plans.push_cert — upload a given certificate + key, activate it for the purposes,
verify, clean up (make-before-break, see ``install``).

The certificate comes from files: one bundle for every selected device (a wildcard
certificate, say), or one per device from a folder (``<device>.pem`` with its chain and
``<device>.key.pem``, as ``certfleet csr`` writes keys and a CA returns certificates).
Everything is checked before anything is sent: key matches certificate, chain, validity,
SANs for HTTPS, key usage for the purpose.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography import x509

from ..pki.checks import check_for_device
from ..results import Change
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

__all__ = ["PushCert"]

CertificateSource = Callable[[str], NewCertificate]


@dataclass
class PushCert:
    purposes: tuple[str, ...]
    #: device name → the certificate to install (raises CertificateCheckError/PemError)
    source: CertificateSource
    anchors: Sequence[x509.Certificate] = ()
    name: str = "push-cert"

    async def read(self, ctx: DeviceContext) -> tuple[list[CertificateInfo], NewCertificate]:
        require_purposes(ctx, self.purposes)
        new = self.source(ctx.device.name)
        https = "HTTPS" in self.purposes
        anchors = [*self.anchors, *(c for c in new.chain if c.issuer == c.subject),
                   *(certfleet_trust(ctx.device) if https else ())]
        check_for_device(ctx.device, new.leaf, new.chain, new.key, trusted=anchors,
                         purposes=self.purposes, now=ctx.now, source=new.source)
        if https:
            check_certfleet_keeps_trust(ctx.device, new.leaf, new.chain)
        current = await ctx.xapi.services_show()
        ctx.result.fingerprints_before = sorted(set(active_leaves(current, self.purposes).values()))
        return current, new

    def diff(
        self, ctx: DeviceContext, state: tuple[list[CertificateInfo], NewCertificate]
    ) -> list[Change]:
        current, new = state
        active = active_leaves(current, self.purposes)
        if all(active.get(p) == new.fingerprint for p in self.purposes):
            return []
        missing = [p for p in self.purposes if active.get(p) != new.fingerprint]
        return [Change("cert.install", new.fingerprint,
                       f"{new.source} for {', '.join(missing)}")]

    async def apply(
        self,
        ctx: DeviceContext,
        state: tuple[list[CertificateInfo], NewCertificate],
        changes: list[Change],
    ) -> None:
        current, new = state
        notes = await install_certificate(ctx, new, self.purposes, current)
        changes[0].applied = True
        if notes:
            ctx.result.message = "; ".join(notes)
