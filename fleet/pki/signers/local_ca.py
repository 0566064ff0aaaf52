"""fleet.pki.signers.local_ca — sign device CSRs with the local lab CA (``--signer local-ca``)."""

from __future__ import annotations

import asyncio

from cryptography import x509

from ...errors import InputError, SignerError
from ..local_ca import LocalCa
from .base import SignedCertificate, SigningRequest

__all__ = ["LocalCaSigner"]


class LocalCaSigner:
    """Issues certificates from a :class:`~fleet.pki.local_ca.LocalCa`; the chain is empty (the
    CA is the root: push it to the devices with ``push-ca``, see :attr:`trust_anchors`)."""

    name: str = "local-ca"

    def __init__(self, ca: LocalCa, days: int = 365) -> None:
        if days < 1:
            raise InputError(f"--days must be at least 1, not {days}")
        self.ca = ca
        self.days = days

    @property
    def trust_anchors(self) -> tuple[x509.Certificate, ...]:
        """The CA certificate(s) devices must trust for what this signer issues."""
        return (self.ca.cert,)

    async def sign(self, request: SigningRequest) -> SignedCertificate:
        try:
            # RSA-3072 / P-384 signatures take milliseconds: off the event loop all the same
            cert = await asyncio.to_thread(
                self.ca.sign_csr, request.csr, days=self.days, purposes=request.purposes
            )
        except InputError as exc:
            raise SignerError(f"local CA: {exc}", device=request.device.name) from None
        return SignedCertificate(cert=cert, chain=())
