"""fleet.pki.signers.files — signing by hand through two folders (``--signer files``).

The first run writes each device's CSR to ``<outbox>/<device>.csr.pem`` and stops that device
with :class:`~fleet.errors.SigningPending`. Someone takes the CSRs to their CA and puts each
signed certificate (alone or with its chain, in any order) into the inbox, as
``<inbox>/<device>.pem`` or under any name ending in ``.pem``, ``.crt`` or ``.cer``. The next run
picks it up. Certificates are matched to a device by public key, never by file name alone: a
``<device>.pem`` whose certificate is for another key is an error naming the file.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Final

from cryptography import x509

from ...errors import PemError, SignerError, SigningPending
from ...files import read_file
from ..bundle import order_chain
from ..certs import parse_pem_certificates
from ..checks import describe_cert
from ..csr import csr_pem
from ..keys import describe_key, same_public_key, write_atomic
from .base import SignedCertificate, SigningRequest

__all__ = ["INBOX_SUFFIXES", "FilesSigner"]

INBOX_SUFFIXES: Final = (".pem", ".crt", ".cer")


class FilesSigner:
    """CSRs out to ``outbox``, certificates back from ``inbox`` (see the module text)."""

    name: str = "files"

    def __init__(self, outbox: str | Path, inbox: str | Path) -> None:
        self.outbox = Path(outbox)
        self.inbox = Path(inbox)

    def csr_path(self, device: str) -> Path:
        return self.outbox / f"{device}.csr.pem"

    def cert_path(self, device: str) -> Path:
        return self.inbox / f"{device}.pem"

    async def sign(self, request: SigningRequest) -> SignedCertificate:
        return await asyncio.to_thread(self._sign, request)

    def _sign(self, request: SigningRequest) -> SignedCertificate:
        device = request.device.name
        found = self._look_in_inbox(request)
        if found is not None:
            return found
        path = self.csr_path(device)
        try:
            self.outbox.mkdir(parents=True, exist_ok=True)
            write_atomic(path, csr_pem(request.csr), mode=0o644)
        except OSError as exc:
            raise SignerError(f"cannot write the CSR to {path}: {exc.strerror or exc}",
                              device=device) from None
        raise SigningPending(
            f"CSR written to {path}; put the signed certificate in {self.cert_path(device)} "
            "and run again",
            device=device,
        )

    def _look_in_inbox(self, request: SigningRequest) -> SignedCertificate | None:
        device = request.device.name
        named = self.cert_path(device)
        if named.is_file():
            certs = self._read(named, device, strict=True)
            result = self._match(certs, request, named)
            if result is None:
                raise SignerError(
                    f"{named} holds no certificate for {device}'s key: its certificate "
                    f"{describe_cert(certs[0])} is for {describe_key(certs[0])}, the CSR "
                    f"for {describe_key(request.csr)}",
                    device=device,
                )
            return result
        if not self.inbox.is_dir():
            return None
        for path in sorted(self.inbox.iterdir()):
            if path == named or path.suffix.lower() not in INBOX_SUFFIXES or not path.is_file():
                continue
            certs = self._read(path, device, strict=False)
            result = self._match(certs, request, path)
            if result is not None:
                return result
        return None

    @staticmethod
    def _read(path: Path, device: str, *, strict: bool) -> list[x509.Certificate]:
        try:
            return parse_pem_certificates(read_file(path), source=str(path),
                                          allow_private_key=True)
        except (PemError, OSError) as exc:
            if not strict:
                return []  # someone else's file, or not a certificate: not this device's concern
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            raise SignerError(_named_reason(path, reason), device=device) from None

    @staticmethod
    def _match(
        certs: list[x509.Certificate], request: SigningRequest, path: Path
    ) -> SignedCertificate | None:
        mine = [c for c in certs if same_public_key(c, request.csr)]
        if not mine:
            return None
        try:
            ordered = order_chain(certs, source=str(path))
        except PemError as exc:
            raise SignerError(str(exc), device=request.device.name) from None
        if not same_public_key(ordered[0], request.csr):
            raise SignerError(
                f"{path}: the certificate for {request.device.name}'s key "
                f"{describe_cert(mine[0])} is not the leaf of the file's chain "
                f"(the leaf is {describe_cert(ordered[0])})",
                device=request.device.name,
            )
        return SignedCertificate(cert=ordered[0], chain=tuple(ordered[1:]))


def _named_reason(path: Path, reason: str | None) -> str:
    text = reason or "cannot be read"
    return text if text.startswith(str(path)) else f"{path}: {text}"
