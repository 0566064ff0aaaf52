"""fleet.fingerprints — the one reading of a certificate fingerprint, wherever it comes from.

An inventory's ``verify: pin:sha256:…``, a SCEP CA fingerprint (``--ca-fingerprint``,
``--scep-ca-fingerprint``), a renewal profile's CA and the fingerprints a device reports are all
hex digits in any case, with colons or white space anywhere between them (``AB:CD:…`` as
``openssl x509 -fingerprint`` prints it, ``abcd ef01 …`` as some consoles group it). Read here,
each becomes lowercase hex without separators: the form RoomOS prints and certfleet compares.

It imports nothing but ``re``: the inventory reads its pins with it without loading
``cryptography``.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Final

__all__ = ["CA_DIGEST_LENGTHS", "normalize_fingerprint"]

#: hex digits of the digests a CA fingerprint may be: SHA-256 or SHA-1 (as ``scepclient
#: -ca-fingerprint`` and RoomOS' DHCP option 43 take it)
CA_DIGEST_LENGTHS: Final = (64, 40)

_SEPARATORS: Final = re.compile(r"[\s:]")
_HEX_DIGITS: Final = frozenset("0123456789abcdef")
_HEX: Final = re.compile("[0-9a-f]+")
_DIGESTS: Final = {64: "SHA-256", 40: "SHA-1"}


def normalize_fingerprint(text: str, *, lengths: Collection[int] | None = None) -> str:
    """``text`` as lowercase hex without separators. With ``lengths``, it must have one of those
    numbers of hex digits (:data:`CA_DIGEST_LENGTHS` for a CA; ``(64,)`` for a SHA-256 pin).

    ValueError, saying what was found and what a fingerprint is, for anything else.
    """
    digits = _SEPARATORS.sub("", text).lower()
    if _HEX.fullmatch(digits) and (not lengths or len(digits) in lengths):
        return digits  # one regex: every device of a run has its lists read
    bad = next((c for c in digits if c not in _HEX_DIGITS), None)
    if not digits:
        found = "nothing"
    elif bad is not None:
        found = f"{bad!r}, not a hex digit"
    else:
        found = f"{len(digits)} hex digits"
    if lengths:
        digests = " or ".join(
            f"{_DIGESTS.get(n, f'{n * 4}-bit digest')} ({n} hex digits)"
            for n in sorted(lengths, reverse=True)
        )
        wanted = f"the {digests} of the certificate's DER"
    else:
        wanted = "hex digits"
    raise ValueError(
        f"not a fingerprint ({found}): a fingerprint is {wanted}, colons and spaces allowed "
        "(e.g. from `openssl x509 -in CERT.pem -noout -fingerprint -sha256`)"
    )
