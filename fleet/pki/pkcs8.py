"""fleet.pki.pkcs8 — private keys encrypted at rest: PKCS#8 ``ENCRYPTED PRIVATE KEY`` with
PBES2, PBKDF2-HMAC-SHA256 at :data:`KDF_ITERATIONS` and AES-256-CBC.

Why not ``BestAvailableEncryption``: cryptography derives the key with 2048 PBKDF2
iterations, far below what a guessed passphrase should cost today, and offers no way to ask
for more in PKCS#8 (its ``encryption_builder`` is for OpenSSH and PKCS#12 only). 600,000 is
OWASP's figure (2023) for PBKDF2-HMAC-SHA256. The output is standard: OpenSSL and
cryptography read it.

What that costs a rotation of hundreds of devices: every key there is encrypted with one
journal passphrase, and ~0.1 s of derivation per key would be minutes of CPU. So one salt is
drawn per passphrase in a process and its derived key kept (in memory only, like the
passphrase itself): the first key costs one derivation, the others microseconds; decryption
keeps derived keys the same way. Sharing the salt between keys of one passphrase gives an
attacker nothing: whoever guesses the passphrase from one key has all of them anyway, and
each key still has its own random IV.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from typing import Final

from asn1crypto import keys as asn1_keys  # type: ignore[import-untyped]
from asn1crypto import pem as asn1_pem
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

__all__ = ["KDF_ITERATIONS", "TRANSFER_KDF_ITERATIONS", "decrypt", "encrypt",
           "encrypted_private_key_info"]

#: PBKDF2-HMAC-SHA256 iterations for keys certfleet encrypts (OWASP 2023)
KDF_ITERATIONS: Final = 600_000
#: for a key sealed with a random one-time passphrase for its trip to a device: 192 random
#: bits need no stretching, and the device decrypts it (a room's CPU, not a workstation's)
TRANSFER_KDF_ITERATIONS: Final = 2048
_SALT_BYTES: Final = 16
_CACHE_SIZE: Final = 64

_lock = threading.Lock()
#: passphrase digest → the salt its keys are encrypted with in this process
_salts: dict[bytes, bytes] = {}
#: (passphrase digest, salt, iterations) → derived AES-256 key
_derived: dict[tuple[bytes, bytes, int], bytes] = {}


def _derive(passphrase: bytes, salt: bytes, iterations: int) -> bytes:
    ident = (hashlib.sha256(passphrase).digest(), salt, iterations)
    with _lock:
        key = _derived.get(ident)
    if key is None:
        key = PBKDF2HMAC(hashes.SHA256(), 32, salt, iterations).derive(passphrase)
        with _lock:
            if len(_derived) >= _CACHE_SIZE:
                _derived.pop(next(iter(_derived)))
            _derived[ident] = key
    return key


def _salt_for(passphrase: bytes) -> bytes:
    ident = hashlib.sha256(passphrase).digest()
    with _lock:
        salt = _salts.get(ident)
        if salt is None:
            salt = _salts[ident] = os.urandom(_SALT_BYTES)
    return salt


def encrypt(private_key_info: bytes, passphrase: bytes, *, one_time: bool = False) -> bytes:
    """A PEM ``ENCRYPTED PRIVATE KEY`` of a DER PKCS#8 ``PrivateKeyInfo``. ``one_time``: a
    random passphrase used once — :data:`TRANSFER_KDF_ITERATIONS`, nothing kept."""
    if one_time:
        iterations, salt = TRANSFER_KDF_ITERATIONS, os.urandom(_SALT_BYTES)
        key = PBKDF2HMAC(hashes.SHA256(), 32, salt, iterations).derive(passphrase)
    else:
        iterations, salt = KDF_ITERATIONS, _salt_for(passphrase)
        key = _derive(passphrase, salt, iterations)
    iv = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    plain = padder.update(private_key_info) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    sealed = encryptor.update(plain) + encryptor.finalize()
    return _armor(encrypted_private_key_info(salt, iterations, iv, sealed))


# DER of the fixed parts (X.690): the structure is always the same, only the salt, the
# iteration count, the IV and the sealed bytes vary. Built by hand rather than through
# asn1crypto's object model, which cost more CPU per key than everything else in a rotation's
# client (a test checks the bytes against asn1crypto's).
_OID_PBES2: Final = bytes.fromhex("06092a864886f70d01050d")  # 1.2.840.113549.1.5.13
_OID_PBKDF2: Final = bytes.fromhex("06092a864886f70d01050c")  # 1.2.840.113549.1.5.12
#: AlgorithmIdentifier { hmacWithSHA256 (1.2.840.113549.2.9), NULL }
_PRF_SHA256: Final = bytes.fromhex("300c06082a864886f70d02090500")
_OID_AES256_CBC: Final = bytes.fromhex("060960864801650304012a")  # 2.16.840.1.101.3.4.1.42


def _tlv(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes((tag, size)) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(length))) + length + content


def _der_integer(value: int) -> bytes:
    # non-negative: one leading zero byte when the top bit would read as a sign
    return _tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def encrypted_private_key_info(salt: bytes, iterations: int, iv: bytes, sealed: bytes) -> bytes:
    """DER ``EncryptedPrivateKeyInfo`` (RFC 5958) with PBES2 (RFC 8018): PBKDF2 with
    HMAC-SHA256 over ``salt`` at ``iterations``, AES-256-CBC with ``iv``."""
    kdf_params = _tlv(0x30, _tlv(0x04, salt) + _der_integer(iterations) + _PRF_SHA256)
    kdf = _tlv(0x30, _OID_PBKDF2 + kdf_params)
    scheme = _tlv(0x30, _OID_AES256_CBC + _tlv(0x04, iv))
    algorithm = _tlv(0x30, _OID_PBES2 + _tlv(0x30, kdf + scheme))
    return _tlv(0x30, algorithm + _tlv(0x04, sealed))


#: the PEM label (kept apart from BEGIN/END so that a scan of the tree for committed key
#: material does not take this code for a key)
_LABEL = b"ENCRYPTED PRIVATE KEY"


def _armor(der: bytes) -> bytes:
    text = base64.b64encode(der)
    lines = b"".join(text[i:i + 64] + b"\n" for i in range(0, len(text), 64))
    return b"-----BEGIN " + _LABEL + b"-----\n" + lines + b"-----END " + _LABEL + b"-----\n"


def decrypt(pem: bytes, passphrase: bytes) -> bytes | None:
    """The DER ``PrivateKeyInfo`` in a PEM ``ENCRYPTED PRIVATE KEY`` of the form
    :func:`encrypt` writes (whatever its iteration count), or None for any other form (the
    caller lets cryptography read those). ValueError when the passphrase is wrong."""
    try:
        _, _, der = asn1_pem.unarmor(pem)
        info = asn1_keys.EncryptedPrivateKeyInfo.load(der)
        algorithm = info["encryption_algorithm"]
        if algorithm["algorithm"].native != "pbes2":
            return None
        params = algorithm["parameters"]
        kdf = params["key_derivation_func"]
        scheme = params["encryption_scheme"]
        if kdf["algorithm"].native != "pbkdf2" or scheme["algorithm"].native != "aes256_cbc":
            return None
        kdf_params = kdf["parameters"]
        if kdf_params["prf"]["algorithm"].native != "sha256":
            return None
        salt = kdf_params["salt"].native
        iterations = kdf_params["iteration_count"].native
        iv = scheme["parameters"].native
        sealed = info["encrypted_data"].native
    except (ValueError, TypeError, KeyError):
        return None
    if not isinstance(salt, bytes) or not isinstance(iv, bytes) or len(iv) != 16 or not (
        isinstance(iterations, int) and 1 <= iterations <= 10_000_000
    ) or not isinstance(sealed, bytes) or not sealed or len(sealed) % 16:
        return None
    key = _derive(passphrase, salt, iterations)
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    plain = decryptor.update(sealed) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(plain) + unpadder.finalize()
    except ValueError:
        raise ValueError("wrong passphrase") from None
