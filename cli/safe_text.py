"""cli.safe_text — what every output does to a text before it leaves certfleet.

Device-provided text (reasons, certificate subjects, names from an inventory, hook output) is
data. On its way out it is

* **scrubbed** (:func:`scrub`, :func:`scrub_data`): every known secret masked (the registry in
  :mod:`fleet.secrets`) and any ``user:password@`` in a URL masked. Structured documents are
  scrubbed value by value (keys too) *before* they are serialised, so a secret is found in the
  form it has in the data, never missed because JSON escaped it into another one;
* made **visible** (:func:`visible`): control characters (C0 such as ESC, BEL, NUL, CR; DEL;
  C1), Unicode format characters (bidi overrides like U+202E, zero-width characters), line and
  paragraph separators, surrogates and non-characters are written as escapes (``\\x1b``,
  ``\\u202e``), so a terminal, a CI log, an XML parser or a browser sees them as text and
  cannot be steered by them. The result is always valid in XML 1.0.

JSON keeps the data exact (the JSON encoder escapes control characters itself); everything
written for people or for XML goes through :func:`visible`.
"""

from __future__ import annotations

import unicodedata
from typing import Final

from certfleet.fleet.masking import mask_url_userinfo, scrub, scrub_data

__all__ = ["mask_url_userinfo", "scrub", "scrub_data", "visible", "xml_text"]

#: general categories written as escapes: controls, format (bidi, zero-width), surrogates,
#: line and paragraph separators
_ESCAPED_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _must_escape(char: str) -> bool:
    code = ord(char)
    if 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE:  # Unicode non-characters
        return True
    return unicodedata.category(char) in _ESCAPED_CATEGORIES


def visible(text: str, *, newlines: bool = False) -> str:
    """``text`` with every control, format or separator character written as an escape.

    With ``newlines``, ``\\n`` stays a line break (for cells and messages that span lines).
    """
    if text.isprintable():  # the common case: nothing to do
        return text
    return "".join(
        _escape(char) if _must_escape(char) and not (newlines and char == "\n") else char
        for char in text
    )


def xml_text(text: str) -> str:
    """``text`` fit for an XML 1.0 document (and for whoever displays it): secrets masked,
    control characters as visible escapes, line breaks kept. XML escaping of ``<&"`` is the
    serialiser's job."""
    return visible(scrub(text), newlines=True)
