"""A simulated SCEP server (RFC 8894) on loopback, for the demo and for trying enrollment
without Debian's ``scep`` package. It is labelled *simulated* wherever it is shown.

It speaks enough real SCEP for roomsim's devices and certfleet: ``GetCACaps`` (AES, SHA-256,
POSTPKIOperation), ``GetCACert`` (one DER RSA CA certificate) and ``PKIOperation`` (PKCSReq
only). A request is really checked and decrypted: the pkiMessage's SignedData signature over
its signed attributes, its messageDigest and messageType, then the EnvelopedData is decrypted
with the CA key and the CSR's own signature and challenge password are checked. The answer is
a real CertRep: a SignedData signed by the CA with messageType 3, pkiStatus, transactionID,
recipientNonce (the request's senderNonce) and a fresh senderNonce, around an EnvelopedData
encrypted to the request's signer certificate that holds a certs-only PKCS#7 of the issued
certificate. A wrong challenge or a CSR whose signature does not verify is answered FAILURE
with failInfo badRequest (2) / badMessageCheck (1), as a real CA does.

This module shares no code with certfleet's SCEP client (``fleet.pki.scep``): it is built on
``cryptography`` and ``asn1crypto`` only, so that a client bug cannot be mirrored here.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import logging
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from asn1crypto import algos, cms, core  # type: ignore[import-untyped]
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import AttributeOID, ExtendedKeyUsageOID, NameOID

__all__ = ["SIMULATED_LABEL", "SimScepResponder"]

log = logging.getLogger(__name__)

SIMULATED_LABEL = "roomsim simulated SCEP responder"
CAPS = ("POSTPKIOperation", "SHA-256", "SHA-512", "AES", "SCEPStandard")

_MESSAGE_TYPE = "2.16.840.1.113733.1.9.2"
_PKI_STATUS = "2.16.840.1.113733.1.9.3"
_FAIL_INFO = "2.16.840.1.113733.1.9.4"
_SENDER_NONCE = "2.16.840.1.113733.1.9.5"
_RECIPIENT_NONCE = "2.16.840.1.113733.1.9.6"
_TRANSACTION_ID = "2.16.840.1.113733.1.9.7"
_PKCSREQ = "19"
_CERTREP = "3"
_BAD_MESSAGE_CHECK = "1"
_BAD_REQUEST = "2"
_DIGESTS: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
_MAX_BODY = 256 * 1024


class _Refused(Exception):
    """The request checks out as a pkiMessage but is refused: answered as a FAILURE CertRep."""

    def __init__(self, fail_info: str, why: str) -> None:
        super().__init__(why)
        self.fail_info = fail_info


@dataclass
class _Request:
    transaction_id: str
    sender_nonce: bytes
    signer: x509.Certificate
    digest: str
    enveloped: bytes


def _make_ca(common_name: str, days: int) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "roomsim"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=True,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _attribute(oid: str, value: Any) -> cms.CMSAttribute:
    return cms.CMSAttribute({"type": cms.CMSAttributeType(oid), "values": [value]})


def _attributes(signer_info: cms.SignerInfo) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for attribute in signer_info["signed_attrs"]:
        values = attribute["values"]
        if len(values) != 1:
            oid = attribute["type"].dotted
            raise ValueError(f"signed attribute {oid} has {len(values)} values")
        out[attribute["type"].dotted] = values[0].native
    return out


def _load_der(cert: Any) -> x509.Certificate:
    return x509.load_der_x509_certificate(cert.chosen.dump())


def _parse_request(body: bytes) -> _Request:
    """Check the outer SignedData of a PKCSReq; ValueError when it is not a valid one."""
    info = cms.ContentInfo.load(body)
    if info["content_type"].native != "signed_data":
        raise ValueError("the pkiMessage is not a SignedData")
    signed = info["content"]
    infos = list(signed["signer_infos"])
    if len(infos) != 1:
        raise ValueError(f"the pkiMessage has {len(infos)} signers, not one")
    signer_info = infos[0]
    sid = signer_info["sid"]
    if sid.name != "issuer_and_serial_number":
        raise ValueError("the pkiMessage's signer is not named by issuer and serial")
    signer = None
    for candidate in signed["certificates"] or []:
        if candidate.name != "certificate":
            continue
        tbs = candidate.chosen["tbs_certificate"]
        if (tbs["issuer"] == sid.chosen["issuer"]
                and tbs["serial_number"].native == sid.chosen["serial_number"].native):
            signer = _load_der(candidate)
    if signer is None:
        raise ValueError("the pkiMessage does not carry its signer's certificate")
    digest = signer_info["digest_algorithm"]["algorithm"].native
    if digest not in _DIGESTS:
        raise ValueError(f"digest {digest} is not supported")
    public = signer.public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        raise ValueError("the pkiMessage's signer key is not RSA")
    raw = signer_info["signed_attrs"].dump()
    try:  # signed as a SET OF (0x31), carried as [0] IMPLICIT
        public.verify(signer_info["signature"].native, b"\x31" + raw[1:], padding.PKCS1v15(),
                      _DIGESTS[digest]())
    except InvalidSignature:
        raise ValueError("the pkiMessage's signature does not verify") from None
    values = _attributes(signer_info)
    content = signed["encap_content_info"]["content"].native
    if not isinstance(content, bytes):
        raise ValueError("the pkiMessage has no content")
    hasher = hashes.Hash(_DIGESTS[digest]())
    hasher.update(content)
    if not hmac.compare_digest(values.get("1.2.840.113549.1.9.4") or b"", hasher.finalize()):
        raise ValueError("the pkiMessage's messageDigest does not match its content")
    if values.get(_MESSAGE_TYPE) != _PKCSREQ:
        raise ValueError(f"messageType {values.get(_MESSAGE_TYPE)!r} is not PKCSReq (19)")
    transaction = values.get(_TRANSACTION_ID)
    nonce = values.get(_SENDER_NONCE)
    if not isinstance(transaction, str) or not isinstance(nonce, bytes):
        raise ValueError("the pkiMessage lacks its transactionID or senderNonce")
    return _Request(transaction, nonce, signer, digest, content)


@dataclass
class SimScepResponder:
    """A SCEP CA on ``http://127.0.0.1:<port>/scep``; start with ``with`` or :meth:`start`.

    ``challenge`` (None: no challenge asked) is the password every CSR must carry;
    ``days`` the validity of issued certificates. ``issued`` lists what was issued."""

    challenge: str | None = None
    common_name: str = "roomsim simulated SCEP CA"
    days: int = 365
    host: str = "127.0.0.1"
    issued: list[x509.Certificate] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.host.startswith("127.") and self.host != "::1":
            raise ValueError("the simulated SCEP responder listens on loopback only")
        self.ca, self._key = _make_ca(self.common_name, 3650)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- facts for the user

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the SCEP responder is not started")
        return f"http://{self.host}:{self._server.server_address[1]}/scep"

    @property
    def ca_pem(self) -> str:
        return self.ca.public_bytes(serialization.Encoding.PEM).decode("ascii")

    @property
    def ca_sha256(self) -> str:
        return hashlib.sha256(self.ca.public_bytes(serialization.Encoding.DER)).hexdigest()

    # --------------------------------------------------------------------- lifecycle

    def start(self) -> SimScepResponder:
        responder = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "roomsim-scep/1"

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("scep %s", format % args)

            def do_GET(self) -> None:
                self._serve(None)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > _MAX_BODY:
                    self._send(413, "text/plain", b"request too large")
                    return
                self._serve(self.rfile.read(length))

            def _serve(self, body: bytes | None) -> None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                operation = (query.get("operation") or [""])[0]
                if parts.path.rstrip("/") != "/scep":
                    self._send(404, "text/plain", b"not found")
                    return
                if operation == "GetCACaps":
                    self._send(200, "text/plain", "\n".join(CAPS).encode())
                elif operation == "GetCACert":
                    der = responder.ca.public_bytes(serialization.Encoding.DER)
                    self._send(200, "application/x-x509-ca-cert", der)
                elif operation == "PKIOperation":
                    if body is None:
                        try:
                            body = base64.b64decode((query.get("message") or [""])[0])
                        except ValueError:
                            self._send(400, "text/plain", b"message is not base64")
                            return
                    status, kind, answer = responder.pki_operation(body)
                    self._send(status, kind, answer)
                else:
                    self._send(400, "text/plain", b"unknown operation")

            def _send(self, status: int, kind: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="sim-scep", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> SimScepResponder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ PKIOperation

    def pki_operation(self, body: bytes) -> tuple[int, str, bytes]:
        """(HTTP status, content type, body) for one PKIOperation message."""
        try:
            request = _parse_request(body)
        except (ValueError, KeyError, TypeError) as exc:
            return 400, "text/plain", f"not a valid PKCSReq: {exc}".encode()
        try:
            cert = self._issue(request)
        except _Refused as refused:
            log.info("scep: refused transaction %s: %s", request.transaction_id, refused)
            return 200, "application/x-pki-message", self._cert_rep(request, None,
                                                                   refused.fail_info)
        return 200, "application/x-pki-message", self._cert_rep(request, cert, None)

    def _issue(self, request: _Request) -> x509.Certificate:
        try:
            plain = pkcs7.pkcs7_decrypt_der(request.enveloped, self.ca, self._key, [])
        except ValueError as exc:
            raise _Refused(_BAD_MESSAGE_CHECK, f"cannot decrypt the request: {exc}") from None
        try:
            csr = x509.load_der_x509_csr(plain)
        except ValueError:
            raise _Refused(_BAD_REQUEST, "the envelope holds no CSR") from None
        if not csr.is_signature_valid:
            raise _Refused(_BAD_MESSAGE_CHECK, "the CSR's signature does not verify")
        if self.challenge is not None:
            try:
                given = csr.attributes.get_attribute_for_oid(AttributeOID.CHALLENGE_PASSWORD)
            except x509.AttributeNotFound:
                raise _Refused(_BAD_REQUEST, "no challenge password") from None
            if not hmac.compare_digest(given.value, self.challenge.encode("utf-8")):
                raise _Refused(_BAD_REQUEST, "wrong challenge password")
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(csr.subject).issuer_name(self.ca.subject)
            .public_key(csr.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=self.days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=True,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH,
                                                  ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self._key.public_key()), critical=False)
        )
        try:
            san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            builder = builder.add_extension(san.value, critical=san.critical)
        except x509.ExtensionNotFound:
            pass
        cert = builder.sign(self._key, hashes.SHA256())
        with self._lock:
            self.issued.append(cert)
        return cert

    def _cert_rep(self, request: _Request, cert: x509.Certificate | None,
                  fail_info: str | None) -> bytes:
        content = b""
        if cert is not None:
            degenerate = pkcs7.serialize_certificates([cert], serialization.Encoding.DER)
            content = (pkcs7.PKCS7EnvelopeBuilder().set_data(degenerate)
                       .add_recipient(request.signer)
                       .encrypt(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary]))
        digest = request.digest
        hasher = hashes.Hash(_DIGESTS[digest]())
        hasher.update(content)
        attrs = [
            _attribute("content_type", "data"),
            _attribute("message_digest", hasher.finalize()),
            _attribute(_MESSAGE_TYPE, core.PrintableString(_CERTREP)),
            _attribute(_PKI_STATUS, core.PrintableString("0" if cert is not None else "2")),
            _attribute(_TRANSACTION_ID, core.PrintableString(request.transaction_id)),
            _attribute(_RECIPIENT_NONCE, core.OctetString(request.sender_nonce)),
            _attribute(_SENDER_NONCE, core.OctetString(secrets.token_bytes(16))),
        ]
        if fail_info is not None:
            attrs.append(_attribute(_FAIL_INFO, core.PrintableString(fail_info)))
        signed_attrs = cms.CMSAttributes(attrs)
        signature = self._key.sign(signed_attrs.dump(), padding.PKCS1v15(), _DIGESTS[digest]())
        ca_asn1 = asn1_x509.Certificate.load(self.ca.public_bytes(serialization.Encoding.DER))
        signer_info = cms.SignerInfo({
            "version": "v1",
            "sid": cms.SignerIdentifier({"issuer_and_serial_number": cms.IssuerAndSerialNumber(
                {"issuer": ca_asn1.issuer, "serial_number": ca_asn1.serial_number})}),
            "digest_algorithm": algos.DigestAlgorithm({"algorithm": digest}),
            "signed_attrs": signed_attrs,
            "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": "rsassa_pkcs1v15"}),
            "signature": signature,
        })
        signed = cms.SignedData({
            "version": "v1",
            "digest_algorithms": [algos.DigestAlgorithm({"algorithm": digest})],
            "encap_content_info": {"content_type": "data",
                                   "content": content if content else None},
            "certificates": [ca_asn1],
            "signer_infos": [signer_info],
        })
        return bytes(cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump())


def main(argv: list[str] | None = None) -> int:
    """`python3 -m certfleet.roomsim.scep_responder --state DIR`: serve until Ctrl-C or
    SIGTERM. Prints the three values an enrollment needs as shell `export` lines (the
    challenge as a `file:` reference to a mode-0600 file in DIR, never the value), then
    `ready`."""
    import argparse
    import contextlib
    import os
    import signal
    import sys
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="python3 -m certfleet.roomsim.scep_responder",
                                     description=f"{SIMULATED_LABEL} on 127.0.0.1")
    parser.add_argument("--state", type=Path, required=True,
                        help="folder for the challenge file (made if missing)")
    parser.add_argument("--days", type=int, default=365, help="validity of issued certificates")
    args = parser.parse_args(argv)
    state: Path = args.state.resolve()
    state.mkdir(parents=True, exist_ok=True)
    challenge_file = state / "scep-challenge"
    challenge = secrets.token_urlsafe(18)
    fd = os.open(challenge_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(challenge + "\n")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with SimScepResponder(challenge=challenge, days=args.days) as responder:
        print(f"{SIMULATED_LABEL} (not a real CA) at {responder.url}", file=sys.stderr)
        print(f"export SCEP_URL={responder.url}")
        print(f"export SCEP_CA_SHA256={responder.ca_sha256}")
        print(f"export SCEP_CHALLENGE_REF=file:{challenge_file}")
        print("ready", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
