"""fleet.pki.signers — how a device's CSR becomes a certificate (``--signer``)."""

from fleet.pki.signers.base import SignedCertificate, Signer, SigningRequest

__all__ = ["SignedCertificate", "Signer", "SigningRequest"]
