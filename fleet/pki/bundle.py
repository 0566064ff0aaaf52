"""fleet.pki.bundle — PEM bundles: a leaf certificate, its chain and (maybe) its private key.

People and CAs hand out bundles in every order. :func:`parse_bundle` reads one and puts it in
order — the leaf first, then each issuer up the chain — by matching issuer names to subjects,
authority key identifiers to subject key identifiers and, where names are ambiguous, by checking
the signatures. A bundle that holds two unrelated leaves, or certificates that do not chain, is
a :class:`~fleet.errors.PemError` naming the file.

:func:`bundle_pem` writes what RoomOS ``Security Certificates Services Add`` wants in its body:
the leaf first (it is the one the device tries to use), then the intermediates, then the key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..errors import PemError
from .certs import fingerprint, oneline_name, parse_pem_certificates
from .checks import ChainProblem, describe_cert, is_ca, verify_issued_by
from .keys import PrivateKey, load_key_pem

if TYPE_CHECKING:
    from ..secrets import Secret

__all__ = ["Bundle", "bundle_pem", "order_chain", "parse_bundle"]


@dataclass(frozen=True)
class Bundle:
    """A leaf, its chain (leaf-side first; the root, if the file had it, last) and its key."""

    leaf: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()
    key: PrivateKey | None = None

    @property
    def certificates(self) -> tuple[x509.Certificate, ...]:
        return (self.leaf, *self.chain)


def _issues(issuer: x509.Certificate, child: x509.Certificate) -> bool:
    if issuer is child or issuer.subject != child.issuer:
        return False
    try:
        verify_issued_by(child, issuer)
    except ChainProblem:
        return False
    return True


def order_chain(certs: Sequence[x509.Certificate], *, source: str) -> list[x509.Certificate]:
    """``certs`` in chain order: the leaf, then its issuer, then that one's issuer, ...

    Duplicates are dropped. PemError naming ``source`` when the certificates hold more than one
    leaf or do not form one unbroken chain.
    """
    unique: dict[str, x509.Certificate] = {}
    for cert in certs:
        unique.setdefault(fingerprint(cert, "sha256"), cert)
    items = list(unique.values())
    if not items:
        raise PemError("holds no certificate", file=source)
    if len(items) == 1:
        return items
    # who issued whom, within the file (self-signed certificates issue nobody here)
    parent: dict[int, x509.Certificate] = {}
    issues_someone: set[int] = set()
    for child in items:
        for candidate in items:
            if _issues(candidate, child):
                parent[id(child)] = candidate
                issues_someone.add(id(candidate))
                break
    leaves = [c for c in items if id(c) not in issues_someone]
    if len(leaves) != 1:
        raise PemError(_leaves_problem(leaves, items), file=source)
    ordered = [leaves[0]]
    while id(ordered[-1]) in parent and len(ordered) <= len(items):
        nxt = parent[id(ordered[-1])]
        if any(nxt is seen for seen in ordered):
            break
        ordered.append(nxt)
    stray = [c for c in items if not any(c is o for o in ordered)]
    if stray:
        raise PemError(
            f"the certificates do not form one chain: {describe_cert(stray[0])} is not an issuer "
            f"of {describe_cert(ordered[-1])} nor of anything below it",
            file=source,
        )
    return ordered


def _leaves_problem(leaves: list[x509.Certificate], items: list[x509.Certificate]) -> str:
    if not leaves:
        return "the certificates issue each other in a loop; there is no leaf"
    end_entities = [c for c in leaves if not is_ca(c)]
    if len(end_entities) > 1:
        listed = "; ".join(describe_cert(c) for c in end_entities)
        return (
            f"holds {len(end_entities)} unrelated leaf certificates ({listed}); a bundle is one "
            "leaf and its chain"
        )
    if len(end_entities) == 1:
        leaf = end_entities[0]
        others = [c for c in leaves if c is not leaf]
        return (
            f"the chain is broken: {describe_cert(others[0])} issues no certificate of the file, "
            f"and the leaf {describe_cert(leaf)} needs '{oneline_name(leaf.issuer)}'"
        )
    listed = "; ".join(describe_cert(c) for c in leaves)
    return f"the certificates do not form one chain ({listed} are each the end of one)"


def parse_bundle(
    data: bytes, *, source: str, passphrase: Secret | None = None
) -> Bundle:
    """The leaf, ordered chain and (optional) private key of a PEM bundle, in any order.

    PemError naming ``source``: no certificate, a block that does not decode, two leaves, a
    broken chain, two keys, or an encrypted key without (or with the wrong) passphrase.
    """
    certs = parse_pem_certificates(data, source=source, allow_private_key=True)
    ordered = order_chain(certs, source=source)
    key = None
    if b"PRIVATE KEY-----" in data:
        key = load_key_pem(data, passphrase, source=source)
    return Bundle(leaf=ordered[0], chain=tuple(ordered[1:]), key=key)


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def bundle_pem(
    leaf: x509.Certificate,
    chain: Sequence[x509.Certificate] = (),
    key_pem: bytes | str | None = None,
) -> str:
    """The body of ``Services Add``: leaf, then the chain (as given), then the key PEM."""
    parts = [_pem(leaf)]
    parts += [_pem(cert) for cert in chain if cert != leaf]
    if key_pem:
        text = key_pem.decode("ascii") if isinstance(key_pem, bytes) else key_pem
        parts.append(text if text.endswith("\n") else text + "\n")
    return "".join(parts)
