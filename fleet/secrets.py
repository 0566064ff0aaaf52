"""fleet.secrets — secret references, the Secret wrapper, and redaction of secrets from output.

An inventory never holds a secret, only a reference to one:

    env:CERTFLEET_PASSWORD      an environment variable
    keyring:certfleet/admin     the OS keyring, service "certfleet", user "admin"
                                (split at the last "/", so services may contain "/")
    file:/abs/path              a file readable only by its owner (mode 0600 or stricter).
                                It lets a simulated fleet's inventory work from any shell with
                                no set-up.

Whatever the kind, one trailing newline (``\n`` or ``\r\n``, as files and CI secrets pasted
with one have) is not part of the value; any other control character is refused with an error
that names the reference (never the value): it would end up in an HTTP header.

:meth:`SecretRef.resolve` gives a :class:`Secret`, whose ``repr``/``str`` are ``********`` so it
cannot leak into logs by accident; :meth:`Secret.reveal` is the one way to the value. Every
Secret registers its value with a process-wide redactor, and :func:`redact` masks every
registered value in a text: run it over everything certfleet writes. Values that come from
elsewhere (tokens, passphrases, SCEP challenges) are registered with :func:`register_secret`.
"""

from __future__ import annotations

import hmac
import json
import os
import re
import stat
import threading
import unicodedata
from dataclasses import dataclass
from html import escape as html_escape
from typing import Final, Literal
from urllib.parse import quote

from .errors import SecretError
from .files import NotARegularFileError, read_file

__all__ = [
    "MASK",
    "MIN_PASSPHRASE",
    "SCHEMES",
    "Secret",
    "SecretRef",
    "SecretScheme",
    "parse_secret_ref",
    "redact",
    "register_secret",
    "secret_in_json",
]

MASK: Final = "********"
#: the shortest passphrase accepted for encrypting private keys
MIN_PASSPHRASE: Final = 8
#: the largest secret file read (a password, token or passphrase is far smaller)
MAX_SECRET_FILE: Final = 64 * 1024
#: values shorter than this are not redacted (masking "a" everywhere would ruin every text)
MIN_REDACT_LENGTH: Final = 4

SecretScheme = Literal["env", "keyring", "file"]
SCHEMES: Final[tuple[SecretScheme, ...]] = ("env", "keyring", "file")

_HOW_TO: Final = (
    "literal secrets are not allowed in an inventory; "
    "use env:VAR, keyring:SERVICE/USER or file:PATH"
)
_ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


# ----------------------------------------------------------------------------- redaction


class _Redactor:
    """The registered secret values, and how to find them in a text quickly.

    Most values live in one compiled regex (a trie, built lazily: longest match first). Values
    registered since it was built wait in a short list searched with ``str.find``; once that
    list outgrows a quarter of the regex it is folded in and the regex rebuilt. So registering
    secrets one by one between output lines (one per device, say) costs amortised O(1)
    rebuilds, not one rebuild of everything per secret.

    Before any of that, a text is screened (:meth:`_may_hold`): the regex of a run's many
    session tokens branches at every character of a text (a device's JSON part took ~0.4 ms
    with 500 tokens registered). Any value of :data:`_GRAM` * 2 - 1 characters or more that
    occurs in a text covers one of the text's :data:`_GRAM`-long pieces at a multiple of
    :data:`_GRAM`, and that piece is one of the value's first :data:`_GRAM` pieces (kept in
    ``_grams``); shorter values get a regex of their own. While there are at most
    :data:`_FEW` long values (one password, a passphrase), the screen searches for each of
    them instead: faster than cutting the text into pieces. A text the screen passes holds
    no value; one it does not is searched as above.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._compiled_values: set[str] = set()
        self._recent: tuple[str, ...] = ()
        self._pattern: re.Pattern[str] | None = None
        #: the screen: the long values while they are few, the pieces of all long values,
        #: the short values and their regex
        self._few: tuple[str, ...] | None = ()
        self._grams: set[str] = set()
        self._short: set[str] = set()
        self._short_pattern: re.Pattern[str] | None = None

    def add(self, variants: set[str]) -> None:
        """Find each of ``variants`` from now on."""
        with self._lock:
            new = variants - self._compiled_values - set(self._recent)
            if not new:
                return
            for value in new:  # the screen first: a value is never searched but screened
                if len(value) >= _LONG:
                    self._grams.update(value[at:at + _GRAM] for at in range(_GRAM))
                    few = self._few
                    if few is not None:
                        self._few = (*few, value) if len(few) < _FEW else None
                else:
                    self._short.add(value)
                    self._short_pattern = None  # rebuilt by the next screen
            recent = self._recent + tuple(sorted(new))
            if len(recent) > max(_RECENT_MIN, len(self._compiled_values) // 4):
                self._compiled_values.update(recent)
                self._recent = ()
                self._pattern = None  # rebuilt by the next redact()
            else:
                self._recent = recent

    def _snapshot(self) -> tuple[re.Pattern[str] | None, tuple[str, ...]]:
        pattern, recent = self._pattern, self._recent
        if pattern is None and self._compiled_values:
            with self._lock:
                if self._pattern is None and self._compiled_values:
                    self._pattern = _compile(self._compiled_values)
                pattern, recent = self._pattern, self._recent
        return pattern, recent

    def _may_hold(self, text: str) -> bool:
        """False only if ``text`` holds no value (see the class's docstring)."""
        short = self._short_pattern
        if short is None and self._short:
            with self._lock:
                if self._short_pattern is None:
                    self._short_pattern = _compile(self._short)
                short = self._short_pattern
        if short is not None and short.search(text) is not None:
            return True
        if len(text) < _LONG or not self._grams:
            return False
        few = self._few
        if few is not None:  # a handful of values: a search for each beats cutting the text
            return any(value in text for value in few)
        # the text's pieces at multiples of _GRAM, cut in C (a set comprehension of slices
        # cost twice as much)
        return not self._grams.isdisjoint(_PIECES.findall(text))

    def redact(self, text: str) -> str:
        if not self._may_hold(text):
            return text
        pattern, recent = self._snapshot()
        hits = [value for value in recent if value in text]
        if not hits:
            return pattern.sub(MASK, text) if pattern is not None else text
        spans = [m.span() for m in pattern.finditer(text)] if pattern is not None else []
        for value in hits:
            start = text.find(value)
            while start != -1:
                spans.append((start, start + len(value)))
                start = text.find(value, start + 1)
        return _mask_spans(text, spans)

    def found(self, text: str) -> bool:
        """Whether ``text`` holds any of the values."""
        if not self._may_hold(text):
            return False
        pattern, recent = self._snapshot()
        return any(value in text for value in recent) or (
            pattern is not None and pattern.search(text) is not None)


#: below this many, newly registered values are searched with str.find rather than compiled
_RECENT_MIN: Final = 32
#: up to this many long values, the screen searches the text for each of them; beyond, it
#: compares the text's pieces (a cost that does not grow with the number of values)
_FEW: Final = 16
#: the length of the pieces the screen compares (see _Redactor), and the shortest value it
#: screens by them
_GRAM: Final = 8
_LONG: Final = 2 * _GRAM - 1
#: a text's consecutive _GRAM-long pieces, from its start (the last, shorter rest left out)
_PIECES: Final = re.compile(f".{{{_GRAM}}}", re.DOTALL)


def _mask_spans(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` with each span masked; overlapping spans mask as one."""
    spans.sort()
    out: list[str] = []
    pos = 0
    cur_start, cur_end = spans[0]
    for start, end in spans[1:]:
        if start < cur_end:
            cur_end = max(cur_end, end)
            continue
        out += (text[pos:cur_start], MASK)
        pos = cur_end
        cur_start, cur_end = start, end
    out += (text[pos:cur_start], MASK, text[cur_end:])
    return "".join(out)


_Trie = dict[str, "_Trie"]


def _compile(values: set[str]) -> re.Pattern[str]:
    """One regex matching any of ``values``, the longest where several match at one place.

    The alternatives are laid out as a trie (``ab(?:c|d(?:e)?)``) so matching costs about the
    same for ten secrets or ten thousand; a plain longest-first alternation is the fallback.
    """
    try:
        trie: _Trie = {}
        for value in values:
            node = trie
            for char in value:
                node = node.setdefault(char, {})
            node[""] = {}  # a value ends here
        return re.compile(_trie_pattern(trie))
    except (RecursionError, re.error):
        ordered = sorted(values, key=lambda v: (-len(v), v))
        return re.compile("|".join(map(re.escape, ordered)))


def _trie_pattern(node: _Trie) -> str:
    branches: list[str] = []
    for char in sorted(node):
        if not char:
            continue
        chunk, child = char, node[char]
        while len(child) == 1 and "" not in child:  # compress single-child chains
            ((nxt, child),) = child.items()
            chunk += nxt
        branches.append(re.escape(chunk) + _trie_pattern(child))
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    # a value ending here: try the longer ones first (greedy), then stop here
    return f"(?:{body})?" if "" in node else body


def _variants(value: str) -> set[str]:
    """The value, and the value without a trailing newline or CR (a secret pasted with one is
    sent, echoed or quoted without it), each in the forms it takes once escaped into JSON, XML,
    HTML or a URL, or quoted by Python's repr of the text or of its bytes (as error messages
    of HTTP libraries do: ``Illegal header value b'Bearer ...\\n'``)."""
    forms: set[str] = set()
    for base in {value, value.rstrip("\r\n")}:
        forms |= {
            base,
            json.dumps(base)[1:-1],
            json.dumps(base, ensure_ascii=False)[1:-1],
            # XML's form (xml.sax.saxutils.escape would import urllib.request at start-up)
            html_escape(base).replace("&#x27;", "&apos;"),
            html_escape(base),
            quote(base, safe=""),
            repr(base)[1:-1],
            repr(base.encode("utf-8", "surrogatepass"))[2:-1],
        }
    return forms


_REDACTOR: Final = _Redactor()
#: each value :data:`_REDACTOR` finds as it is written inside a JSON string (``json.dumps``,
#: ``ensure_ascii``): JSON escapes character by character, so the JSON text of a string that
#: holds a value holds that value's form here (see :func:`secret_in_json`)
_JSON_FORMS: Final = _Redactor()
#: the values given to :func:`register_secret` so far (their forms are in both redactors)
_REGISTERED: Final[set[str]] = set()


def register_secret(value: str) -> None:
    """Make :func:`redact` mask ``value`` (and its JSON/XML/URL-escaped forms) from now on."""
    if value in _REGISTERED:  # the same login's token comes once per device of a run
        return
    variants = {v for v in _variants(value) if len(v) >= MIN_REDACT_LENGTH}
    _JSON_FORMS.add({json.dumps(v)[1:-1] for v in variants})
    _REDACTOR.add(variants)
    _REGISTERED.add(value)


def secret_in_json(text: str) -> bool:
    """Whether the JSON text ``text`` (made by ``json.dumps``, ``ensure_ascii`` on) may hold a
    registered secret: True whenever a string or key encoded into it held something
    :func:`redact` masks (and sometimes when none did, e.g. a match across two strings). False
    means the data it was made from needs no redaction: one search of the text, not one of
    every string in it."""
    return _JSON_FORMS.found(text)


def redact(text: str) -> str:
    """``text`` with every registered secret value of 4+ characters replaced by ``********``."""
    return _REDACTOR.redact(text)


# -------------------------------------------------------------------------------- Secret


class Secret:
    """A secret value that does not show itself: ``str``/``repr`` give ``********``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        register_secret(value)

    def reveal(self) -> str:
        """The value itself: pass it straight to the wire, never to a log."""
        return self._value

    def __repr__(self) -> str:
        return MASK

    def __str__(self) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    # defining __eq__ without __hash__ leaves Secret unhashable, as it should be


# ----------------------------------------------------------------------------- SecretRef


@dataclass(frozen=True)
class SecretRef:
    """Where a secret lives: ``env:VAR``, ``keyring:SERVICE/USER`` or ``file:PATH``."""

    scheme: SecretScheme
    target: str

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise SecretError(f"unknown secret scheme {self.scheme!r}; {_HOW_TO}")
        problem = _target_problem(self.scheme, self.target)
        if problem:
            raise SecretError(problem)

    def __str__(self) -> str:
        return f"{self.scheme}:{self.target}"

    @property
    def keyring_service_user(self) -> tuple[str, str]:
        """(service, user) of a ``keyring:`` reference (split at the last ``/``)."""
        if self.scheme != "keyring":
            raise SecretError(f"{self} is not a keyring: reference")
        service, _, user = self.target.rpartition("/")
        return service, user

    def resolve(self) -> Secret:
        """Fetch the secret. Raises :class:`SecretError` saying how to fix what is missing."""
        if self.scheme == "env":
            value = _resolve_env(self.target)
        elif self.scheme == "keyring":
            service, user = self.keyring_service_user
            value = _resolve_keyring(service, user)
        else:
            value = _resolve_file(self.target)
        return Secret(_clean(value, str(self)))


    def resolve_passphrase(self) -> Secret:
        """Fetch a passphrase that will encrypt private keys: SecretError (naming this
        reference, never the value) when it is shorter than :data:`MIN_PASSPHRASE`."""
        secret = self.resolve()
        if len(secret.reveal()) < MIN_PASSPHRASE:
            raise SecretError(
                f"the passphrase {self} is shorter than {MIN_PASSPHRASE} characters: too short "
                "to protect private keys; use a longer one"
            )
        return secret


def _clean(value: str, ref: str) -> str:
    """``value`` without one trailing newline; a SecretError naming ``ref`` (never the value)
    for any other control character, or for nothing left."""
    if value.endswith("\r\n"):
        value = value[:-2]
    elif value.endswith("\n"):
        value = value[:-1]
    if not value:
        raise SecretError(f"the secret {ref} is empty")
    bad = next((c for c in value if unicodedata.category(c) == "Cc"), None)
    if bad is not None:
        raise SecretError(
            f"the secret {ref} holds a control character (U+{ord(bad):04X}) besides one "
            "trailing newline; set it again without it (control characters cannot travel in "
            "an HTTP header)"
        )
    return value


def parse_secret_ref(text: str) -> SecretRef:
    """Parse a secret reference. Anything else, a literal secret above all, is a SecretError.

    The error message never contains ``text``: it may be the secret itself.
    """
    scheme, sep, target = text.strip().partition(":")
    if not sep or scheme not in SCHEMES:
        raise SecretError(f"not a secret reference: {_HOW_TO}")
    problem = _target_problem(scheme, target)
    if problem:
        raise SecretError(problem)
    return SecretRef(scheme, target)


def _target_problem(scheme: str, target: str) -> str | None:
    """Why ``target`` is not valid for ``scheme`` (never quoting it), or None."""
    if scheme == "env":
        if not _ENV_NAME.fullmatch(target):
            return (
                "env: needs an environment variable name (letters, digits, underscores), "
                f"e.g. env:CERTFLEET_PASSWORD; {_HOW_TO}"
            )
    elif scheme == "keyring":
        service, slash, user = target.rpartition("/")
        if not slash or not service or not user or target != target.strip():
            return f"keyring: needs SERVICE/USER, e.g. keyring:certfleet/admin; {_HOW_TO}"
    elif scheme == "file" and (not target or target != target.strip() or "\x00" in target):
        return f"file: needs a path, e.g. file:/etc/certfleet/password; {_HOW_TO}"
    return None


def _resolve_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        state = "is empty" if value is not None else "is not set"
        raise SecretError(
            f"environment variable {name} {state}; export {name}=... "
            "or use a keyring:SERVICE/USER or file:PATH reference"
        )
    return value


def _resolve_keyring(service: str, user: str) -> str:
    how = f"set it with `keyring set {service} {user}` or use an env:VAR reference instead"
    try:
        import keyring  # only for keyring: references: its backends cost ~50 ms at start-up

        value = keyring.get_password(service, user)
    except Exception as exc:  # any backend failure: locked, missing, no D-Bus, ...
        detail = redact(str(exc)) or type(exc).__name__
        raise SecretError(
            f"keyring lookup of service {service!r} user {user!r} failed "
            f"({type(exc).__name__}: {detail}); {how}"
        ) from None
    if not value:
        raise SecretError(
            f"no password in the keyring for service {service!r} user {user!r}; {how}"
        )
    return value


def _resolve_file(target: str) -> str:
    path = os.path.expanduser(target)

    def owner_only(info: os.stat_result) -> None:
        if info.st_mode & 0o077:
            raise SecretError(
                f"secret file {path} is accessible by group or others "
                f"(mode {stat.S_IMODE(info.st_mode):04o}); run: chmod 600 {path}"
            )

    try:
        data = read_file(path, limit=MAX_SECRET_FILE, inspect=owner_only)
    except FileNotFoundError:
        raise SecretError(f"secret file {path} does not exist") from None
    except NotARegularFileError as exc:
        raise SecretError(f"secret file {path} {exc.strerror}") from None
    except IsADirectoryError:
        raise SecretError(f"secret file {path} is a directory, not a regular file") from None
    except OSError as exc:
        raise SecretError(f"cannot read secret file {path}: {exc.strerror or exc}") from None
    try:
        value = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretError(f"secret file {path} is not UTF-8 text") from None
    if not value.rstrip("\r\n"):
        raise SecretError(f"secret file {path} is empty")
    return value
