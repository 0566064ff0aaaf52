"""fleet.pki.scep — a SCEP client (RFC 8894): GetCACaps, GetCACert and enrollment (PKCSReq).

One client for every SCEP user in the project: certfleet's ``scep`` signer, and roomsim when a
simulated device enrolls. It takes plain inputs (a URL, a CSR, an RSA key), nothing from the
inventory.

Trust. The CA is pinned by the SHA-256 (or SHA-1) fingerprint of its certificate's DER, as
``scepclient -ca-fingerprint`` takes it. :meth:`ScepClient.get_ca` may run without one, to show
the fingerprint to an administrator; :meth:`ScepClient.enroll` refuses to run without one, and
when the pin does not match, nothing but GetCACert has been sent. The reply (CertRep) must be
signed by the pinned CA or an RA certificate the CA issued; its messageDigest, messageType,
transactionID and recipientNonce are checked, and the certificate is taken from the *encrypted*
part of the reply and must carry our key and be issued by the CA. (Some servers also put the
issued certificate in clear into the outer SignedData; that copy is never used.)

The request. A pkiMessage (PKCSReq, messageType 19): a CMS SignedData, signed by a throw-away
self-signed certificate of the CSR's key (included, because the server encrypts its answer to
it), around an EnvelopedData of the CSR encrypted to the CA/RA certificate. Per the server's
GetCACaps: AES-128-CBC if it says ``AES`` or ``SCEPStandard`` (RFC 8894 §3.5.2: "AES" is
AES128-CBC), else 3DES-CBC; SHA-256 if it says ``SHA-256`` or ``SCEPStandard``, else SHA-1;
HTTP POST if it says ``POSTPKIOperation`` or ``SCEPStandard``, else GET with the message in
standard base64, %-encoded. The AES envelope comes from ``cryptography``'s
``PKCS7EnvelopeBuilder``; the 3DES one and the SignedData (whose SCEP signed attributes
``cryptography`` cannot add) are built with ``asn1crypto``.

The reply. Real servers answer with what they like, not with what they advertise: micromdm's
scepserver 2.1.0 (Debian's ``scep``) always answers with single DES-CBC and SHA-1, and its
EnvelopedData carries ``encryptedContent`` as a BER *constructed* ``[0]``, which neither
``cryptography`` nor ``asn1crypto`` read. So the EnvelopedData is walked TLV by TLV here, the
content-encryption key unwrapped with RSA PKCS#1 v1.5, and DES-CBC (as 3DES with the key
repeated three times), 3DES-CBC or AES-CBC decrypted by hand.

Errors are :class:`~fleet.errors.ScepError`: unreachable server, HTTP errors (with the server's
own text), a CA that is not the pinned one, a FAILURE reply (``fail_info`` is the RFC name:
badAlg, badMessageCheck, badRequest, badTime, badCertId), PENDING (polling is not supported), or
a reply that does not check out. Bad *inputs* (a CSR that does not match the key, a challenge
that is not in the CSR) are ``ValueError``. The challenge password never appears in an error or
a log line: it is registered with :func:`fleet.secrets.register_secret`, and no message here is
built from the CSR's attributes anyway.

Enrollments to one server are serialised within the process (:mod:`fleet.pki.scep.lock`):
scepserver 2.1.0 keeps its serial number and index.txt in files without a lock, and concurrent
PKCSReqs get duplicate serials and a corrupt index (seen with 20 at once; fixed upstream in
2.2.0). Fleets enroll in parallel, so the lock is here, in the one client, rather than in every
caller.

The package, by concept: :mod:`~fleet.pki.scep.client` (HTTP, the enroll flow),
:mod:`~fleet.pki.scep.ca` (GetCACert, the pin), :mod:`~fleet.pki.scep.csr`,
:mod:`~fleet.pki.scep.message` (the PKCSReq), :mod:`~fleet.pki.scep.reply` (the CertRep),
:mod:`~fleet.pki.scep.envelope` (CMS EnvelopedData), :mod:`~fleet.pki.scep.ber` (the BER walker)
and :mod:`~fleet.pki.scep.lock`.
"""

from .ber import (
    EnvelopedParts,
    Tlv,
    octet_string_value,
    read_tlv,
    split_enveloped_data,
    tlv_children,
)
from .ca import CaInfo
from .client import EnrollResult, ScepClient
from .csr import build_scep_csr, csr_with_challenge
from .envelope import decrypt_content, decrypt_enveloped
from .message import (
    FAIL_INFO,
    OID_FAIL_INFO,
    OID_MESSAGE_TYPE,
    OID_PKI_STATUS,
    OID_RECIPIENT_NONCE,
    OID_SENDER_NONCE,
    OID_TRANSACTION_ID,
)

__all__ = [
    "FAIL_INFO",
    "OID_FAIL_INFO",
    "OID_MESSAGE_TYPE",
    "OID_PKI_STATUS",
    "OID_RECIPIENT_NONCE",
    "OID_SENDER_NONCE",
    "OID_TRANSACTION_ID",
    "CaInfo",
    "EnrollResult",
    "EnvelopedParts",
    "ScepClient",
    "Tlv",
    "build_scep_csr",
    "csr_with_challenge",
    "decrypt_content",
    "decrypt_enveloped",
    "octet_string_value",
    "read_tlv",
    "split_enveloped_data",
    "tlv_children",
]
