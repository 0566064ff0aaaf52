"""fleet.pki.checks — is this certificate, chain and key fit for this device? Asked before a push.

:func:`check_for_device` checks, in this order, and stops at the first problem:

1. the private key belongs to the certificate;
2. the certificate (and every certificate of its chain) is within its validity window, and does
   not expire within a day;
3. the chain leads, signature by signature, to one of the CAs the device trusts (or will trust):
   each link's issuer name is the next certificate's subject, AKI matches SKI where both are
   present, the signature verifies with the issuer's key (RSA PKCS#1 v1.5 or PSS, ECDSA,
   Ed25519, Ed448), and every issuer is a CA allowed to sign certificates at that depth;
4. for HTTPS, the subjectAltNames cover how the device is reached (its host: an IP address in
   the SAN IPs, a DNS name in the SAN DNS names, wildcards matching one leftmost label);
5. key usage and extended key usage fit every purpose (HTTPS needs serverAuth, 802.1X and Audit
   clientAuth, SIP either).

The chain is checked by hand rather than with ``cryptography.x509.verification``: its server
verifier insists on serverAuth, which an 802.1X (clientAuth-only) certificate rightly lacks, and
doing it here gives each failure its own message. Every failure is a
:class:`~fleet.errors.CertificateCheckError` naming the device and the file, saying what is
wrong and how the certificate looks.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable, Sequence
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID

from ..errors import CertificateCheckError, InputError
from ..inventory import Device
from .certs import fingerprint, oneline_name
from .keys import describe_key, same_public_key

__all__ = [
    "PURPOSES",
    "ChainProblem",
    "check_for_device",
    "describe_cert",
    "host_matches",
    "is_ca",
    "key_ids_match",
    "normalize_purposes",
    "verify_issued_by",
]

#: the RoomOS service certificate purposes (Services Activate ... Purpose)
PURPOSES: Final = ("HTTPS", "SIP", "802.1X", "Audit", "Pairing", "WebexIdentity", "HttpClient",
                   "HttpProxy")
_SERVER: Final = ExtendedKeyUsageOID.SERVER_AUTH
_CLIENT: Final = ExtendedKeyUsageOID.CLIENT_AUTH
_ANY_EKU: Final = ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE
#: purpose -> (EKUs of which one is needed when the certificate has an EKU extension,
#:             key usages of which one is needed when it has a KU extension)
_USAGE: Final[dict[str, tuple[tuple[x509.ObjectIdentifier, ...], tuple[str, ...]]]] = {
    "HTTPS": ((_SERVER,), ("digital_signature", "key_encipherment")),
    "SIP": ((_SERVER, _CLIENT), ("digital_signature", "key_encipherment")),
    "802.1X": ((_CLIENT,), ("digital_signature",)),
    "Audit": ((_CLIENT,), ("digital_signature",)),
    "HttpClient": ((_CLIENT,), ("digital_signature",)),
    "HttpProxy": ((_CLIENT,), ("digital_signature",)),
}
_EKU_NAMES: Final = {
    _SERVER: "serverAuth",
    _CLIENT: "clientAuth",
    _ANY_EKU: "anyExtendedKeyUsage",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
}
_KU_NAMES: Final = {
    "digital_signature": "digitalSignature",
    "content_commitment": "nonRepudiation",
    "key_encipherment": "keyEncipherment",
    "data_encipherment": "dataEncipherment",
    "key_agreement": "keyAgreement",
    "key_cert_sign": "keyCertSign",
    "crl_sign": "cRLSign",
}
_MAX_DEPTH: Final = 10
_SOON: Final = dt.timedelta(days=1)


class ChainProblem(Exception):
    """Why a certificate is not issued by another one (internal to chain building)."""


def normalize_purposes(purposes: Iterable[str]) -> tuple[str, ...]:
    """The purposes in RoomOS spelling (case-insensitive input); InputError for unknown ones."""
    canonical = {p.lower(): p for p in PURPOSES}
    out: list[str] = []
    for raw in purposes:
        for piece in raw.split(","):
            name = piece.strip()
            if not name:
                continue
            found = canonical.get(name.lower())
            if found is None:
                raise InputError(
                    f"unknown certificate purpose {name!r}; use one of: {', '.join(PURPOSES)}"
                )
            if found not in out:
                out.append(found)
    return tuple(out)


# ------------------------------------------------------------------ describing


def _when(moment: dt.datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def describe_cert(cert: x509.Certificate, *, issuer: bool = True) -> str:
    """``'/O=Example/CN=room-1' [issuer '/CN=Corp CA', SHA-1 ab12…]``: enough to find it."""
    subject = oneline_name(cert.subject) or "(empty subject)"
    if not issuer:
        return f"'{subject}' [SHA-1 {fingerprint(cert)}]"
    issued_by = oneline_name(cert.issuer) or "(empty issuer)"
    return f"'{subject}' [issuer '{issued_by}', SHA-1 {fingerprint(cert)}]"


def is_ca(cert: x509.Certificate) -> bool:
    """basicConstraints CA:TRUE (a v1 certificate without extensions counts as a CA)."""
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return cert.version == x509.Version.v1


def _ext(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.ExtensionType | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def key_ids_match(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    """False only when both key identifiers are present and differ (AKI keyid vs SKI)."""
    aki = _ext(child, x509.AuthorityKeyIdentifier)
    ski = _ext(issuer, x509.SubjectKeyIdentifier)
    if not isinstance(aki, x509.AuthorityKeyIdentifier) or aki.key_identifier is None:
        return True
    if not isinstance(ski, x509.SubjectKeyIdentifier):
        return True
    return aki.key_identifier == ski.digest


def verify_issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> None:
    """Raise ChainProblem unless ``issuer``'s name and key issued ``cert``.

    Checks the names, the key identifiers where both are present, and the signature itself
    (RSA PKCS#1 v1.5 or PSS, ECDSA, Ed25519, Ed448) over the to-be-signed bytes.
    """
    if cert.issuer != issuer.subject:
        raise ChainProblem(
            f"its issuer '{oneline_name(cert.issuer)}' is not the subject "
            f"'{oneline_name(issuer.subject)}' of the next certificate"
        )
    if not key_ids_match(cert, issuer):
        raise ChainProblem(
            f"its authority key identifier does not match the subject key identifier of "
            f"'{oneline_name(issuer.subject)}' (same name, different CA key)"
        )
    public = issuer.public_key()
    try:
        if isinstance(public, rsa.RSAPublicKey):
            params = cert.signature_algorithm_parameters
            hash_algorithm = cert.signature_hash_algorithm
            if not isinstance(params, padding.PKCS1v15 | padding.PSS) or hash_algorithm is None:
                raise ChainProblem("it is signed with an algorithm that does not fit an RSA key")
            public.verify(cert.signature, cert.tbs_certificate_bytes, params, hash_algorithm)
        elif isinstance(public, ec.EllipticCurvePublicKey):
            params = cert.signature_algorithm_parameters
            if not isinstance(params, ec.ECDSA):
                raise ChainProblem("it is signed with an algorithm that does not fit an EC key")
            public.verify(cert.signature, cert.tbs_certificate_bytes, params)
        elif isinstance(public, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            public.verify(cert.signature, cert.tbs_certificate_bytes)
        else:
            raise ChainProblem(
                f"its issuer's key ({type(public).__name__}) is of a kind certfleet cannot check"
            )
    except InvalidSignature:
        raise ChainProblem(
            f"its signature does not verify with the key of '{oneline_name(issuer.subject)}' "
            "(same name, different CA key, or an altered certificate)"
        ) from None
    except (UnsupportedAlgorithm, ValueError, TypeError) as exc:
        raise ChainProblem(f"its signature cannot be checked: {exc}") from None


# ------------------------------------------------------------------- host names


def host_matches(host: str, cert: x509.Certificate) -> bool:
    """Does the certificate's subjectAltName cover ``host`` (an IP address or a DNS name)?"""
    san = _ext(cert, x509.SubjectAlternativeName)
    if not isinstance(san, x509.SubjectAlternativeName):
        return False
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        address = None
    if address is not None:
        return address in san.get_values_for_type(x509.IPAddress)
    wanted = host.rstrip(".").lower()
    return any(_dns_match(pattern, wanted) for pattern in san.get_values_for_type(x509.DNSName))


def _dns_match(pattern: str, host: str) -> bool:
    pattern = pattern.rstrip(".").lower()
    if pattern == host:
        return True
    if not pattern.startswith("*."):
        return False
    # "*.example.com" matches exactly one leftmost label: a.example.com, not a.b.example.com
    suffix = pattern[1:]
    label, dot, rest = host.partition(".")
    return bool(dot and label and "." + rest == suffix and rest.count(".") >= 1)


# ---------------------------------------------------------------------- the check


class _Failure(Exception):
    pass


def check_for_device(
    device: Device,
    leaf: x509.Certificate,
    chain: Sequence[x509.Certificate],
    key: CertificateIssuerPrivateKeyTypes | None,
    *,
    trusted: Sequence[x509.Certificate],
    purposes: Sequence[str],
    now: dt.datetime | None = None,
    source: str,
) -> tuple[x509.Certificate, ...]:
    """Check ``leaf`` (+ ``chain``, + ``key``) for ``device``; CertificateCheckError if unfit.

    ``chain`` holds intermediates (any order, the root may be among them); ``trusted`` the CAs
    the device trusts or will trust. ``key`` None means the key lives on the device (on-device
    CSR) and is not checked. ``source`` names the file in messages. Returns the verified path,
    leaf first, ending with the trusted CA.
    """
    now = now or dt.datetime.now(dt.UTC)
    wanted = normalize_purposes(purposes)
    try:
        if key is not None:
            _check_key(leaf, key)
        _check_validity(leaf, now, what="the certificate")
        path = _check_chain(leaf, chain, trusted, now)
        if "HTTPS" in wanted and device.host:
            _check_host(leaf, device.host)
        for purpose in wanted:
            _check_usage(leaf, purpose)
    except _Failure as failure:
        raise CertificateCheckError(
            f"{source}: not fit for {device.name}: {failure}", device=device.name
        ) from None
    return path


def _check_key(leaf: x509.Certificate, key: CertificateIssuerPrivateKeyTypes) -> None:
    if not same_public_key(leaf, key):
        raise _Failure(
            "the private key does not match the certificate "
            f"(certificate {describe_cert(leaf)} holds {describe_key(leaf)}; "
            f"the private key is {describe_key(key)})"
        )


def _check_validity(cert: x509.Certificate, now: dt.datetime, *, what: str) -> None:
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    window = f"valid {_when(start)} to {_when(end)}"
    if now < start:
        raise _Failure(
            f"{what} {describe_cert(cert)} is not valid yet: {window} "
            f"(starts in {_span(start - now)}; check the clock of the machine that signed it)"
        )
    if now > end:
        raise _Failure(f"{what} {describe_cert(cert)} expired on {_when(end)} "
                       f"({_span(now - end)} ago; {window})")
    if end - now < _SOON:
        raise _Failure(
            f"{what} {describe_cert(cert)} expires within a day, on {_when(end)} "
            f"(in {_span(end - now)}): renew it before pushing it"
        )


def _span(delta: dt.timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds >= 2 * 86400:
        return f"{seconds // 86400} days"
    if seconds >= 2 * 3600:
        return f"{seconds // 3600} hours"
    return f"{max(seconds // 60, 0)} minutes"


def _check_chain(
    leaf: x509.Certificate,
    chain: Sequence[x509.Certificate],
    trusted: Sequence[x509.Certificate],
    now: dt.datetime,
) -> tuple[x509.Certificate, ...]:
    if not trusted:
        raise _Failure(
            "there is no trusted CA to check the chain against (give the CA the device trusts)"
        )
    trusted_fps = {fingerprint(t, "sha256") for t in trusted}
    path: list[x509.Certificate] = [leaf]
    current = leaf
    pool = [c for c in chain if fingerprint(c, "sha256") != fingerprint(leaf, "sha256")]
    while True:
        if fingerprint(current, "sha256") in trusted_fps:
            return tuple(path)  # the chain itself holds a trusted CA
        anchor, anchor_problem = _find_issuer(current, trusted)
        if anchor is not None:
            _check_issuer(anchor, path, now, what="the trusted CA")
            path.append(anchor)
            return tuple(path)
        issuer, pool_problem = _find_issuer(current, pool)
        if issuer is None:
            problem = pool_problem or anchor_problem
            if problem is not None:
                raise _Failure(f"the chain is broken at {describe_cert(current)}: {problem}")
            raise _Failure(_no_issuer_message(current, leaf, pool, trusted))
        if len(path) > _MAX_DEPTH:
            raise _Failure(f"the chain is longer than {_MAX_DEPTH} certificates (a loop?)")
        _check_issuer(issuer, path, now, what="the chain certificate")
        path.append(issuer)
        pool.remove(issuer)
        current = issuer


def _find_issuer(
    cert: x509.Certificate, candidates: Sequence[x509.Certificate]
) -> tuple[x509.Certificate | None, ChainProblem | None]:
    """The candidate that really issued ``cert``, or None and why the likeliest one did not
    (a candidate with the right name whose key identifier or signature does not fit)."""
    problem: ChainProblem | None = None
    for candidate in candidates:
        if candidate.subject != cert.issuer:
            continue
        try:
            verify_issued_by(cert, candidate)
        except ChainProblem as exc:
            problem = problem or exc
            continue
        return candidate, None
    return None, problem


def _check_issuer(
    issuer: x509.Certificate, path: Sequence[x509.Certificate], now: dt.datetime, *, what: str
) -> None:
    child = path[-1]
    if not is_ca(issuer):
        raise _Failure(
            f"{what} {describe_cert(issuer)} is not a CA certificate (basicConstraints CA is "
            f"not true), so it cannot issue {describe_cert(child)}"
        )
    usage = _ext(issuer, x509.KeyUsage)
    if isinstance(usage, x509.KeyUsage) and not usage.key_cert_sign:
        raise _Failure(f"{what} {describe_cert(issuer)} has no keyCertSign key usage, so it "
                       f"cannot issue {describe_cert(child)}")
    constraints = _ext(issuer, x509.BasicConstraints)
    if isinstance(constraints, x509.BasicConstraints) and constraints.path_length is not None:
        below = len(path) - 1  # CA certificates between this issuer and the leaf
        if below > constraints.path_length:
            raise _Failure(
                f"{what} {describe_cert(issuer)} allows {constraints.path_length} intermediate "
                f"CA(s) below it (pathLen), the chain has {below}"
            )
    _check_validity(issuer, now, what=what)


def _no_issuer_message(
    current: x509.Certificate,
    leaf: x509.Certificate,
    pool: Sequence[x509.Certificate],
    trusted: Sequence[x509.Certificate],
) -> str:
    names = ", ".join(f"'{oneline_name(t.subject)}'" for t in trusted)
    where = "the certificate" if current is leaf else "the chain ends with"
    if current.issuer == current.subject:
        return (
            f"the chain does not lead to a CA the device trusts: {where} the self-signed "
            f"{describe_cert(current, issuer=False)}, which is not among the trusted CAs "
            f"({names})"
        )
    missing = "" if pool or current is not leaf else " (which holds no intermediate)"
    return (
        f"the chain does not lead to a CA the device trusts: {where} "
        f"{describe_cert(current, issuer=False)}, whose issuer "
        f"'{oneline_name(current.issuer)}' is neither in the file{missing} nor among the "
        f"trusted CAs ({names})"
    )


def _check_host(leaf: x509.Certificate, host: str) -> None:
    if host_matches(host, leaf):
        return
    san = _ext(leaf, x509.SubjectAlternativeName)
    if not isinstance(san, x509.SubjectAlternativeName):
        shown = "it has no subjectAltName extension at all (the CN is ignored by TLS clients)"
    else:
        dns = san.get_values_for_type(x509.DNSName)
        ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
        shown = f"its SAN DNS names are [{', '.join(dns)}] and SAN IPs [{', '.join(ips)}]"
    try:
        ipaddress.ip_address(host.strip("[]"))
        kind = "IP address"
    except ValueError:
        kind = "DNS name"
    raise _Failure(
        f"for HTTPS the certificate must name the device's host, {kind} {host}, in its "
        f"subjectAltName; {shown} (certificate {describe_cert(leaf)})"
    )


def _check_usage(leaf: x509.Certificate, purpose: str) -> None:
    if purpose not in _USAGE:
        return
    ekus_needed, kus_needed = _USAGE[purpose]
    eku = _ext(leaf, x509.ExtendedKeyUsage)
    if isinstance(eku, x509.ExtendedKeyUsage):
        present = list(eku)
        if _ANY_EKU not in present and not any(oid in present for oid in ekus_needed):
            need = " or ".join(_EKU_NAMES[o] for o in ekus_needed)
            has = ", ".join(_EKU_NAMES.get(o, o.dotted_string) for o in present) or "nothing"
            raise _Failure(
                f"for {purpose} the certificate needs extended key usage {need}; it has only "
                f"{has} (certificate {describe_cert(leaf)})"
            )
    usage = _ext(leaf, x509.KeyUsage)
    if isinstance(usage, x509.KeyUsage):
        present_ku = [name for name in _KU_NAMES if _ku_bit(usage, name)]
        if not any(name in present_ku for name in kus_needed):
            need = " or ".join(_KU_NAMES[n] for n in kus_needed)
            has = ", ".join(_KU_NAMES[n] for n in present_ku) or "nothing"
            raise _Failure(
                f"for {purpose} the certificate needs key usage {need}; it has only {has} "
                f"(certificate {describe_cert(leaf)})"
            )


def _ku_bit(usage: x509.KeyUsage, name: str) -> bool:
    try:
        return bool(getattr(usage, name))
    except ValueError:  # encipher_only / decipher_only without key_agreement
        return False
