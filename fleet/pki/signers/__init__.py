"""fleet.pki.signers — how a device's CSR becomes a certificate (``--signer``)."""

from .base import SignedCertificate, Signer, SigningRequest

__all__ = ["SignedCertificate", "Signer", "SigningRequest"]
