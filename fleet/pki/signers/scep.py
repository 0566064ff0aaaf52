"""fleet.pki.signers.scep — enroll device CSRs at a SCEP server (``--signer scep``).

certfleet's CSR builder makes CSRs without a challenge password; this signer has the device's
key, so it signs the CSR again with the same subject and extensions plus the challengePassword
attribute (:func:`fleet.pki.scep.csr_with_challenge`) and enrolls it with
:class:`fleet.pki.scep.ScepClient`. The CA is pinned by its fingerprint; every enrollment
checks it again (GetCACert is one small request), so a CA that changes mid-run is noticed.

SCEP is RSA-only in practice (the request is signed, and the answer decrypted, with the device
key, and servers refuse EC CSRs), so an EC device key is a :class:`~fleet.errors.SignerError`
before anything is sent. Failures are :class:`~fleet.errors.ScepError` naming the device.
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric import rsa

from ...errors import CertfleetError, ScepError, SignerError
from ...fingerprints import CA_DIGEST_LENGTHS, normalize_fingerprint
from ...inventory import Device
from ...secrets import Secret, redact
from ..keys import describe_key
from ..scep import ScepClient, csr_with_challenge
from .base import SignedCertificate, SigningRequest

__all__ = ["ScepSigner"]


class ScepSigner:
    """Issues certificates through a SCEP server (RFC 8894), one PKCSReq per device."""

    name: str = "scep"

    def __init__(
        self,
        url: str,
        *,
        ca_fingerprint: str,
        challenge: Secret | Callable[[Device], Secret] | None,
        timeout: float = 30.0,
    ) -> None:
        try:
            normalize_fingerprint(ca_fingerprint, lengths=CA_DIGEST_LENGTHS)
        except ValueError as exc:
            raise ScepError(f"SCEP CA fingerprint for {url}: {exc}") from None
        self.url = url
        self.ca_fingerprint = ca_fingerprint
        self.timeout = timeout
        self._challenge = challenge

    def _challenge_for(self, device: Device) -> Secret | None:
        if self._challenge is None or isinstance(self._challenge, Secret):
            return self._challenge
        try:
            return self._challenge(device)
        except CertfleetError as exc:
            raise ScepError(f"SCEP challenge: {exc}", device=device.name) from None

    async def sign(self, request: SigningRequest) -> SignedCertificate:
        device = request.device.name
        key = request.key
        if not isinstance(key, rsa.RSAPrivateKey):
            raise SignerError(
                f"the scep signer needs an RSA key, and this key is {describe_key(key)}: SCEP "
                "servers issue for RSA requests only (the request is signed and the answer "
                "decrypted with the device's key); set the device's certificate key to "
                "rsa-2048, rsa-3072 or rsa-4096 in the inventory",
                device=device,
            )
        challenge = self._challenge_for(request.device)
        try:
            csr = (csr_with_challenge(request.csr, key, challenge)
                   if challenge is not None else request.csr)
            async with ScepClient(self.url, ca_fingerprint=self.ca_fingerprint,
                                  timeout=self.timeout) as client:
                result = await client.enroll(csr, key, challenge=challenge)
        except ScepError as exc:
            exc.with_context(device=device)
            raise
        except ValueError as exc:
            raise ScepError(f"SCEP: {redact(str(exc))}", device=device) from None
        return SignedCertificate(cert=result.cert, chain=result.chain)
