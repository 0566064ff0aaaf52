"""A device's certificate stores: the CA (trust) list and the service certificates with
the purposes each one is active for. Pure data operations; errors carry the Reason text
the device answers with."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from .certs import (
    CertificateInputError,
    CertInfo,
    is_temporary_default,
    key_matches_cert,
    key_pem,
    load_key_pem,
    load_private_key,
    normalize_fingerprint,
    parse_certificate,
    pem_blocks,
)
from .errors import DeviceError

PURPOSES: tuple[str, ...] = (
    "802.1X",
    "HTTPS",
    "Audit",
    "SIP",
    "Pairing",
    "WebexIdentity",
    "HttpClient",
    "HttpProxy",
)
USED_FOR_LABELS: dict[str, str] = {
    "802.1X": "IEEE 802.1X",
    "HTTPS": "HTTPS server",
    "Audit": "Audit logging",
    "SIP": "SIP",
    "Pairing": "Pairing",
    "WebexIdentity": "Webex Identity",
    "HttpClient": "HTTP client",
    "HttpProxy": "HTTP proxy",
}


class StoreError(DeviceError):
    """A certificate store operation failed; `str(error)` is the Reason."""


class _Same:
    """Compares by identity (``is``) the object it holds."""

    __slots__ = ("item",)

    def __init__(self, item: object) -> None:
        self.item = item

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Same) and other.item is self.item

    def __hash__(self) -> int:
        return id(self.item)


@dataclass
class ServiceCert:
    """A service (identity) certificate: the leaf, the chain as uploaded, the key, and the
    purposes it is active for, in activation order."""

    leaf: CertInfo
    chain: list[CertInfo]
    key: PrivateKeyTypes
    purposes: list[str] = field(default_factory=list)
    _key_pem: tuple[PrivateKeyTypes, str] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def fingerprint(self) -> str:
        return self.leaf.fingerprint

    @property
    def cert(self) -> x509.Certificate:
        return self.leaf.cert

    @property
    def used_for(self) -> str:
        return ", ".join(USED_FOR_LABELS[p] for p in self.purposes)

    def tls_bundle(self) -> str:
        """Leaf, chain and key in one PEM text, as `SSLContext.load_cert_chain` reads it."""
        return "".join([self.leaf.pem, *(c.pem for c in self.chain), self.key_pem()])

    def key_pem(self) -> str:
        """The key as PKCS#8 PEM, serialized once per key object (every save of the device's
        state wrote each of its keys out again)."""
        cached = self._key_pem
        if cached is None or cached[0] is not self.key:
            cached = self._key_pem = (self.key, key_pem(self.key))
        return cached[1]

    def tls_identity(self) -> tuple[object, ...]:
        """Equal for two calls exactly when :meth:`tls_bundle` gives the same text: the leaf,
        the chain and the key object (held here, so its id is not reused while compared)."""
        return (self.leaf.fingerprint, *(c.fingerprint for c in self.chain), _Same(self.key))

    def to_state(self) -> dict[str, Any]:
        return {
            "cert": self.leaf.pem,
            "chain": [c.pem for c in self.chain],
            "key": self.key_pem(),
            "purposes": list(self.purposes),
        }

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> ServiceCert:
        return cls(
            leaf=CertInfo.from_pem(data["cert"]),
            chain=[CertInfo.from_pem(p) for p in data.get("chain", [])],
            key=load_key_pem(data["key"]),
            purposes=[p for p in data.get("purposes", []) if p in USED_FOR_LABELS],
        )


@dataclass
class CertStore:
    ca_list: list[CertInfo] = field(default_factory=list)
    services: list[ServiceCert] = field(default_factory=list)

    # ------------------------------------------------------------------ CA list

    def add_ca(self, body: str) -> int:
        """Append every certificate in `body`; returns how many were new."""
        blocks = pem_blocks(body)
        if any(b.is_private_key for b in blocks):
            raise StoreError("The body contains a private key; CA Add accepts certificates only")
        cert_blocks = [b for b in blocks if b.label == "CERTIFICATE"]
        if not cert_blocks:
            raise StoreError("No PEM certificate (BEGIN CERTIFICATE) found in the body")
        try:
            infos = [CertInfo.of(parse_certificate(b, i)) for i, b in enumerate(cert_blocks, 1)]
        except CertificateInputError as exc:
            raise StoreError(str(exc)) from exc
        added = 0
        for info in infos:
            if not any(c.fingerprint == info.fingerprint for c in self.ca_list):
                self.ca_list.append(info)
                added += 1
        return added

    def delete_ca(self, fingerprint: str) -> CertInfo:
        wanted = normalize_fingerprint(fingerprint)
        for info in self.ca_list:
            if wanted and info.matches(wanted):
                self.ca_list.remove(info)
                return info
        raise StoreError(f"No CA certificate with fingerprint {fingerprint!r}")

    # ------------------------------------------------------------------ services

    def add_service(self, body: str, password: str) -> ServiceCert:
        """Leaf first, then chain certificates, then the private key (any position)."""
        blocks = pem_blocks(body)
        cert_blocks = [b for b in blocks if b.label == "CERTIFICATE"]
        key_blocks = [b for b in blocks if b.is_private_key]
        if not cert_blocks:
            raise StoreError("No PEM certificate (BEGIN CERTIFICATE) found in the body")
        if not key_blocks:
            raise StoreError("No private key found in the body")
        if len(key_blocks) > 1:
            raise StoreError("The body contains more than one private key")
        try:
            certs = [parse_certificate(b, i) for i, b in enumerate(cert_blocks, 1)]
            key = load_private_key(key_blocks[0], password)
        except CertificateInputError as exc:
            raise StoreError(str(exc)) from exc
        if not key_matches_cert(key, certs[0]):
            raise StoreError("The private key does not match the first certificate in the body")
        leaf = CertInfo.of(certs[0])
        chain = [CertInfo.of(c) for c in certs[1:]]
        existing = self.find_service(leaf.fingerprint)
        if existing is not None:  # re-upload of the same certificate: refresh chain and key
            existing.chain, existing.key = chain, key
            return existing
        service = ServiceCert(leaf=leaf, chain=chain, key=key)
        self.services.append(service)
        return service

    def find_service(self, fingerprint: str) -> ServiceCert | None:
        wanted = normalize_fingerprint(fingerprint)
        if not wanted:
            return None
        return next((s for s in self.services if s.leaf.matches(wanted)), None)

    def _service(self, fingerprint: str) -> ServiceCert:
        service = self.find_service(fingerprint)
        if service is None:
            raise StoreError(f"No service certificate with fingerprint {fingerprint!r}")
        return service

    def activate(self, fingerprint: str, purpose: str) -> ServiceCert:
        """Make the certificate the only one active for `purpose`."""
        service = self._service(fingerprint)
        for other in self.services:
            if other is not service and purpose in other.purposes:
                other.purposes.remove(purpose)
        if purpose not in service.purposes:
            service.purposes.append(purpose)
        return service

    def deactivate(self, fingerprint: str, purpose: str) -> ServiceCert:
        service = self._service(fingerprint)
        if purpose in service.purposes:
            service.purposes.remove(purpose)
        return service

    def delete_service(self, fingerprint: str) -> ServiceCert:
        service = self._service(fingerprint)
        self.services.remove(service)
        return service

    def active_for(self, purpose: str) -> ServiceCert | None:
        return next((s for s in self.services if purpose in s.purposes), None)

    def temporary_default(self) -> ServiceCert | None:
        return next((s for s in self.services if is_temporary_default(s.cert)), None)

    # ------------------------------------------------------------------ persistence

    def to_state(self) -> dict[str, Any]:
        return {
            "ca": [c.pem for c in self.ca_list],
            "services": [s.to_state() for s in self.services],
        }

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> CertStore:
        return cls(
            ca_list=[CertInfo.from_pem(p) for p in data.get("ca", [])],
            services=[ServiceCert.from_state(s) for s in data.get("services", [])],
        )
