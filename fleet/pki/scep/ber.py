"""fleet.pki.scep.ber — a BER walker, TLV by TLV, for what ``cryptography`` and ``asn1crypto``
do not read: micromdm's scepserver 2.1.0 sends its EnvelopedData's ``encryptedContent`` as a BER
*constructed* ``[0]``."""

from __future__ import annotations

from typing import Final, NamedTuple

#: DER contents of the OID 1.2.840.113549.1.7.3 (envelopedData)
_ENVELOPED_DATA_OID: Final = bytes.fromhex("2a864886f70d010703")
_MAX_TLV_DEPTH: Final = 32


class Tlv(NamedTuple):
    """One BER TLV: its first identifier octet, and where its parts are in the buffer."""

    tag: int
    constructed: bool
    start: int
    content_start: int
    content_end: int
    end: int


def read_tlv(data: bytes, pos: int = 0, limit: int | None = None, *, _depth: int = 0) -> Tlv:
    """The BER TLV at ``data[pos:]`` (definite or indefinite length). ValueError if malformed."""
    end_limit = len(data) if limit is None else limit
    if _depth > _MAX_TLV_DEPTH:
        raise ValueError("BER nesting too deep")
    if pos >= end_limit:
        raise ValueError("BER data truncated (no tag)")
    tag = data[pos]
    constructed = bool(tag & 0x20)
    cursor = pos + 1
    if tag & 0x1F == 0x1F:  # high tag number: skip its base-128 octets
        while True:
            if cursor >= end_limit:
                raise ValueError("BER data truncated (in a tag)")
            octet = data[cursor]
            cursor += 1
            if not octet & 0x80:
                break
    if cursor >= end_limit:
        raise ValueError("BER data truncated (no length)")
    first = data[cursor]
    cursor += 1
    if first == 0x80:  # indefinite length: children until the end-of-contents octets
        if not constructed:
            raise ValueError("BER indefinite length on a primitive value")
        child = cursor
        while True:
            if child + 2 > end_limit:
                raise ValueError("BER data truncated (no end-of-contents)")
            if data[child] == 0 and data[child + 1] == 0:
                return Tlv(tag, constructed, pos, cursor, child, child + 2)
            child = read_tlv(data, child, end_limit, _depth=_depth + 1).end
    if first & 0x80:
        count = first & 0x7F
        if count > 4:
            raise ValueError("BER length too long")
        if cursor + count > end_limit:
            raise ValueError("BER data truncated (in a length)")
        length = int.from_bytes(data[cursor:cursor + count], "big")
        cursor += count
    else:
        length = first
    if cursor + length > end_limit:
        raise ValueError("BER data truncated (content shorter than its length)")
    return Tlv(tag, constructed, pos, cursor, cursor + length, cursor + length)


def tlv_children(data: bytes, parent: Tlv) -> list[Tlv]:
    """The TLVs inside a constructed ``parent``."""
    if not parent.constructed:
        raise ValueError("a primitive BER value has no children")
    children: list[Tlv] = []
    pos = parent.content_start
    while pos < parent.content_end:
        child = read_tlv(data, pos, parent.content_end)
        children.append(child)
        pos = child.end
    return children


def octet_string_value(data: bytes, tlv: Tlv, *, _depth: int = 0) -> bytes:
    """The bytes of an OCTET STRING (any tag): primitive, or BER constructed from segments."""
    if not tlv.constructed:
        return data[tlv.content_start:tlv.content_end]
    if _depth > _MAX_TLV_DEPTH:
        raise ValueError("BER nesting too deep")
    parts = []
    for child in tlv_children(data, tlv):
        if child.tag & 0xDF != 0x04:  # OCTET STRING segments, primitive or constructed
            raise ValueError(f"a constructed OCTET STRING holds tag 0x{child.tag:02x}")
        parts.append(octet_string_value(data, child, _depth=_depth + 1))
    return b"".join(parts)


class EnvelopedParts(NamedTuple):
    """What is needed from a ContentInfo(EnvelopedData) to decrypt it."""

    recipient_infos: bytes  # the DER/BER of the RecipientInfos SET
    algorithm: bytes  # the DER/BER of the content-encryption AlgorithmIdentifier
    encrypted: bytes  # the encrypted content, segments joined


def split_enveloped_data(data: bytes) -> EnvelopedParts:
    """Walk a ContentInfo(EnvelopedData) TLV by TLV (RFC 5652 §6.1). ValueError if malformed."""
    top = read_tlv(data)
    if top.tag != 0x30:
        raise ValueError("not a ContentInfo (no SEQUENCE)")
    fields = tlv_children(data, top)
    if len(fields) < 2 or fields[0].tag != 0x06 or fields[1].tag != 0xA0:
        raise ValueError("not a ContentInfo (contentType, [0] content)")
    if data[fields[0].content_start:fields[0].content_end] != _ENVELOPED_DATA_OID:
        raise ValueError("the ContentInfo is not envelopedData")
    inner = tlv_children(data, fields[1])
    if len(inner) != 1 or inner[0].tag != 0x30:
        raise ValueError("the envelopedData content is not a SEQUENCE")
    parts = tlv_children(data, inner[0])
    # version, [0] originatorInfo OPTIONAL, recipientInfos SET, encryptedContentInfo, [1] ...
    index = 1
    if index < len(parts) and parts[index].tag == 0xA0:
        index += 1
    if index + 1 >= len(parts) or parts[index].tag != 0x31 or parts[index + 1].tag != 0x30:
        raise ValueError("envelopedData without recipientInfos and encryptedContentInfo")
    recipients, content_info = parts[index], parts[index + 1]
    eci = tlv_children(data, content_info)
    if len(eci) < 3 or eci[1].tag != 0x30 or eci[2].tag not in (0x80, 0xA0):
        raise ValueError("encryptedContentInfo without algorithm and [0] encryptedContent")
    return EnvelopedParts(
        recipient_infos=data[recipients.start:recipients.end],
        algorithm=data[eci[1].start:eci[1].end],
        encrypted=octet_string_value(data, eci[2]),
    )
