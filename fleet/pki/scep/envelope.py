"""fleet.pki.scep.envelope — CMS EnvelopedData both ways: the request's envelope of the CSR for
the CA/RA certificate (AES-128-CBC through ``cryptography``, 3DES-CBC through ``asn1crypto``),
and the reply's decryption (RSA PKCS#1 v1.5 key transport; DES, 3DES or AES-CBC by hand, since
real servers answer with what they like)."""

from __future__ import annotations

import os

from asn1crypto import cms, core  # type: ignore[import-untyped]
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.serialization import pkcs7

from ...errors import ScepError
from .ber import split_enveloped_data


def _issuer_and_serial(cert: x509.Certificate) -> object:
    parsed = asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
    return cms.IssuerAndSerialNumber({"issuer": parsed.issuer,
                                      "serial_number": parsed.serial_number})


def _envelope(data: bytes, recipient: x509.Certificate, cipher: str) -> bytes:
    """ContentInfo(EnvelopedData) of ``data`` for ``recipient`` (RSA PKCS#1 v1.5 key transport)."""
    public = recipient.public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        raise ScepError("the SCEP CA/RA certificate has no RSA key: requests cannot be "
                        "encrypted to it")
    if cipher == "aes128_cbc":
        # AES-128-CBC is the builder's default (and its only choice before cryptography 45)
        return pkcs7.PKCS7EnvelopeBuilder().set_data(data).add_recipient(recipient).encrypt(
            serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary]
        )
    cek, iv = os.urandom(24), os.urandom(8)
    padder = sym_padding.PKCS7(64).padder()
    encryptor = Cipher(TripleDES(cek), modes.CBC(iv)).encryptor()
    encrypted = encryptor.update(padder.update(data) + padder.finalize()) + encryptor.finalize()
    enveloped = cms.EnvelopedData({
        "version": "v0",
        "recipient_infos": [cms.RecipientInfo({"ktri": cms.KeyTransRecipientInfo({
            "version": "v0",
            "rid": cms.RecipientIdentifier({
                "issuer_and_serial_number": _issuer_and_serial(recipient)}),
            "key_encryption_algorithm": {"algorithm": "rsaes_pkcs1v15"},
            "encrypted_key": public.encrypt(cek, padding.PKCS1v15()),
        })})],
        "encrypted_content_info": {
            "content_type": "data",
            "content_encryption_algorithm": {"algorithm": "tripledes_3key",
                                             "parameters": core.OctetString(iv)},
            "encrypted_content": encrypted,
        },
    })
    dumped: bytes = cms.ContentInfo({"content_type": "enveloped_data",
                                     "content": enveloped}).dump()
    return dumped


def decrypt_content(algorithm: str, key: bytes, iv: bytes, encrypted: bytes) -> bytes:
    """CBC-decrypt and unpad (PKCS#7) with ``des`` (single DES, as 3DES with the key three
    times), ``tripledes_3key``, or ``aes128_cbc``/``aes192_cbc``/``aes256_cbc`` (asn1crypto's
    names). ValueError if the key, IV or padding is wrong."""
    cipher: algorithms.AES | TripleDES
    if algorithm == "des":
        if len(key) != 8:
            raise ValueError(f"a DES key has 8 bytes, not {len(key)}")
        cipher = TripleDES(key * 3)  # EDE with K1=K2=K3 is single DES
    elif algorithm == "tripledes_3key":
        if len(key) != 24:
            raise ValueError(f"a 3DES key has 24 bytes, not {len(key)}")
        cipher = TripleDES(key)
    elif algorithm in ("aes128_cbc", "aes192_cbc", "aes256_cbc"):
        if len(key) != int(algorithm[3:6]) // 8:
            raise ValueError(f"{algorithm} needs a {int(algorithm[3:6]) // 8}-byte key")
        cipher = algorithms.AES(key)
    else:
        raise ValueError(f"content encryption {algorithm} is not supported")
    block = cipher.block_size // 8
    if len(iv) != block:
        raise ValueError(f"the IV has {len(iv)} bytes, not {block}")
    if not encrypted or len(encrypted) % block:
        raise ValueError("the encrypted content is not a whole number of blocks")
    decryptor = Cipher(cipher, modes.CBC(iv)).decryptor()
    padded = decryptor.update(encrypted) + decryptor.finalize()
    unpadder = sym_padding.PKCS7(cipher.block_size).unpadder()
    return unpadder.update(padded) + unpadder.finalize()


def decrypt_enveloped(data: bytes, key: rsa.RSAPrivateKey,
                      recipient: x509.Certificate | None = None) -> bytes:
    """The plaintext of a ContentInfo(EnvelopedData) addressed to ``key`` (RSA PKCS#1 v1.5 key
    transport), BER or DER. With ``recipient``, the RecipientInfo must name that certificate.
    ValueError if it cannot be decrypted."""
    parts = split_enveloped_data(data)
    wanted = _issuer_and_serial(recipient) if recipient is not None else None
    encrypted_key: bytes | None = None
    for info in cms.RecipientInfos.load(parts.recipient_infos):
        if info.name != "ktri":
            continue
        ktri = info.chosen
        rid = ktri["rid"]
        if wanted is not None and (
            rid.name != "issuer_and_serial_number"
            or rid.chosen["issuer"] != wanted["issuer"]  # type: ignore[index]
            or rid.chosen["serial_number"].native != wanted["serial_number"].native  # type: ignore[index]
        ):
            continue
        transport = ktri["key_encryption_algorithm"]["algorithm"].native
        if transport != "rsaes_pkcs1v15":
            raise ValueError(f"key transport {transport} is not supported")
        encrypted_key = ktri["encrypted_key"].native
        break
    if encrypted_key is None:
        raise ValueError("the envelope is not addressed to our certificate")
    algorithm = cms.EncryptionAlgorithm.load(parts.algorithm)
    name = algorithm["algorithm"].native
    iv = algorithm["parameters"].native
    if not isinstance(iv, bytes):
        raise ValueError(f"content encryption {name} without an IV")
    content_key = key.decrypt(encrypted_key, padding.PKCS1v15())
    try:
        return decrypt_content(name, content_key, iv, parts.encrypted)
    except ValueError as exc:
        raise ValueError(f"decrypting with {name} failed ({exc}): wrong key, or corrupt") from None
