"""fleet.masking — what may be shown or stored of inputs that can carry secrets.

Secrets are references (``env:``, ``keyring:``, ``file:``) and :func:`fleet.secrets.redact`
masks every resolved value; this module masks what is secret *by position* instead: the
``user:password@`` of a URL, and the values of the options that name secrets in a command line
stored in the run journal.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from typing import Any, Final

from .secrets import MASK, redact, secret_in_json

__all__ = ["MASK", "SECRET_OPTIONS", "dumps_scrubbed", "mask_command_line", "mask_url_userinfo",
           "scrub", "scrub_data"]


#: options whose value is a secret or names one (a reference is not a secret, but it tells
#: where one is kept, and a value typed by mistake in place of a reference would be one)
SECRET_OPTIONS: Final = frozenset({
    "--challenge",
    "--scep-challenge",
    "--journal-passphrase",
    "--ca-passphrase",
    "--key-passphrase",
    "--passphrase",
    "--password",
    "--token",
})

#: ``scheme://user[:password]@``, the userinfo part of a URL anywhere in a text
_USERINFO: Final = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)[^/?#@\s\"'<>]*@")


def mask_url_userinfo(text: str) -> str:
    """``text`` with the ``user:password@`` of every URL in it masked (a SCEP URL may carry
    credentials; a device may quote one back)."""
    if "@" not in text or "://" not in text:
        return text
    return _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)


def mask_command_line(command: str) -> str:
    """A shell-quoted command line with the values of :data:`SECRET_OPTIONS` (``--opt VALUE``
    and ``--opt=VALUE``) and the userinfo of any URL masked."""
    try:
        words = shlex.split(command)
    except ValueError:  # unbalanced quotes: not a command line certfleet made; mask all URLs
        return mask_url_userinfo(command)
    out: list[str] = []
    mask_next = False
    for word in words:
        if mask_next:
            out.append(MASK)
            mask_next = False
            continue
        name, eq, _value = word.partition("=")
        if name in SECRET_OPTIONS:
            if eq:
                out.append(f"{name}={MASK}")
            else:
                out.append(word)
                mask_next = True
            continue
        out.append(mask_url_userinfo(word))
    return " ".join(shlex.quote(word) for word in out)


def scrub(text: str) -> str:
    """``text`` with every known secret and every URL's userinfo masked."""
    return mask_url_userinfo(redact(text))


def scrub_data(value: Any) -> Any:
    """The JSON-like ``value`` with every string in it — keys too — scrubbed (a copy where
    something was masked; ``value`` itself when nothing was).

    Run it on a document *before* it is serialised: the secrets are found as they are, not in
    whatever escaped form the serialiser would give them. All the strings are searched at once
    first (a match in one is a match in them all joined), so a clean document costs one search.
    """
    strings: list[str] = []
    _strings(value, strings)
    joined = "\x00".join(strings)
    if scrub(joined) == joined:
        return value
    return _scrub_each(value)


def dumps_scrubbed(value: Any) -> str:
    """``json.dumps(scrub_data(value))``, the same text, found faster where nothing is secret.

    The JSON text is made first and searched once, for the JSON form of every registered
    secret (:func:`fleet.secrets.secret_in_json`) and for a URL that may carry userinfo (``@``
    and ``://``, which JSON leaves as they are); only where one may be is ``value`` scrubbed
    string by string and encoded again. A string holding a secret always sends it the slow
    way: JSON escapes character by character, so the text of such a string holds the secret's
    JSON form."""
    text = json.dumps(value)
    if secret_in_json(text) or ("@" in text and "://" in text):
        return json.dumps(scrub_data(value))
    return text


def _strings(value: Any, into: list[str]) -> None:
    if isinstance(value, str):
        into.append(value)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str):
                into.append(key)
            _strings(item, into)
    elif isinstance(value, list | tuple):
        for item in value:
            _strings(item, into)


def _scrub_each(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, Mapping):
        return {(scrub(k) if isinstance(k, str) else k): _scrub_each(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_each(item) for item in value]
    return value
