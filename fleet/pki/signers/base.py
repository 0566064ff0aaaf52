"""fleet.pki.signers.base — the one small interface every signer implements.

A signer turns a device's CSR into a certificate and its chain. It is chosen with ``--signer``
(``local-ca``, ``files``, ``command``, ``scep``). Signers are async so that a slow CA (a SCEP
server, an external command) overlaps with the network work of other devices. A signer raises
``SignerError`` (or ``ScepError``) naming the device when it fails, and ``SigningPending`` when
the request is out for signing by hand and the run should come back for it later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from ...inventory import Device

__all__ = ["SignedCertificate", "Signer", "SigningRequest"]


@dataclass(frozen=True)
class SigningRequest:
    device: Device
    csr: x509.CertificateSigningRequest
    #: the private key of the CSR: the SCEP signer needs it to sign the pkiMessage; other
    #: signers must not use it
    key: CertificateIssuerPrivateKeyTypes
    purposes: tuple[str, ...] = ()
    #: free-form metadata for hooks/commands (e.g. "run_id")
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SignedCertificate:
    cert: x509.Certificate
    #: intermediates (leaf not included), leaf-side first; the root may be left out
    chain: tuple[x509.Certificate, ...] = ()


class Signer(Protocol):
    #: "local-ca", "files", "command", "scep"
    name: str

    async def sign(self, request: SigningRequest) -> SignedCertificate: ...
