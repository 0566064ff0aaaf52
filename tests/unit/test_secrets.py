"""Tests for fleet.secrets: references, resolution, the Secret wrapper and redaction."""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keyring
import keyring.backend
import keyring.errors
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from certfleet.fleet.errors import SecretError
from certfleet.fleet.secrets import (
    MASK,
    Secret,
    SecretRef,
    parse_secret_ref,
    redact,
    register_secret,
    secret_in_json,
)

HOW_TO = (
    "literal secrets are not allowed in an inventory; "
    "use env:VAR, keyring:SERVICE/USER or file:PATH"
)


def unique(prefix: str = "s3cret") -> str:
    """A value no other test registered (the redactor is process-wide)."""
    return f"{prefix}-{uuid.uuid4().hex}"


# ------------------------------------------------------------------- in-test keyring


class MemoryKeyring(keyring.backend.KeyringBackend):
    """A keyring backend holding passwords in a dict."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.passwords: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.passwords.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.passwords[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.passwords.pop((service, username), None)


class LockedKeyring(MemoryKeyring):
    """A backend that fails like a locked or unreachable keyring does."""

    def get_password(self, service: str, username: str) -> str | None:
        raise keyring.errors.KeyringLocked("the collection is locked")


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.set_keyring(previous)


@pytest.fixture
def locked_keyring() -> Iterator[LockedKeyring]:
    previous = keyring.get_keyring()
    backend = LockedKeyring()
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.set_keyring(previous)


# ---------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "scheme", "target"),
    [
        ("env:CERTFLEET_PASSWORD", "env", "CERTFLEET_PASSWORD"),
        ("env:_X1", "env", "_X1"),
        ("keyring:certfleet/admin", "keyring", "certfleet/admin"),
        ("keyring:corp/certfleet/admin", "keyring", "corp/certfleet/admin"),
        ("file:/abs/path", "file", "/abs/path"),
        ("file:relative/path.txt", "file", "relative/path.txt"),
        ("  env:PADDED  ", "env", "PADDED"),
    ],
)
def test_parse_secret_ref_accepts_references(text: str, scheme: str, target: str) -> None:
    ref = parse_secret_ref(text)
    assert (ref.scheme, ref.target) == (scheme, target)
    assert str(ref) == f"{scheme}:{target}"
    assert parse_secret_ref(str(ref)) == ref


def test_keyring_reference_splits_at_the_last_slash() -> None:
    ref = parse_secret_ref("keyring:corp/certfleet/admin")
    assert ref.keyring_service_user == ("corp/certfleet", "admin")


@pytest.mark.parametrize(
    "literal",
    [
        "hunter2",
        "Sup3r-Secret!",
        "p@ss:word",
        "1234",
        "ENV:PASSWORD",
        "https://x/y",
        "secret/admin",
    ],
)
def test_literal_secrets_are_refused_without_echoing_them(literal: str) -> None:
    with pytest.raises(SecretError) as info:
        parse_secret_ref(literal)
    message = str(info.value)
    assert HOW_TO in message
    assert literal not in message


@pytest.mark.parametrize(
    "text",
    [
        "",
        "env:",
        "env:1ABC",
        "env:MY-VAR",
        "keyring:",
        "keyring:nouser",
        "keyring:/user",
        "keyring:service/",
        "file:",
    ],
)
def test_malformed_references_are_refused(text: str) -> None:
    with pytest.raises(SecretError) as info:
        parse_secret_ref(text)
    assert "env:VAR, keyring:SERVICE/USER or file:PATH" in str(info.value)


def test_secret_ref_validates_when_built_directly() -> None:
    with pytest.raises(SecretError):
        SecretRef("env", "not a name")
    with pytest.raises(SecretError):
        SecretRef("vault", "x")  # type: ignore[arg-type]


def test_secret_ref_is_frozen_and_hashable() -> None:
    ref = parse_secret_ref("env:A")
    assert {ref: 1}[SecretRef("env", "A")] == 1
    with pytest.raises(AttributeError):
        ref.target = "B"  # type: ignore[misc]


# ---------------------------------------------------------------------------- env:


def test_env_reference_resolves(monkeypatch: pytest.MonkeyPatch) -> None:
    value = unique()
    monkeypatch.setenv("CERTFLEET_TEST_PW", value)
    secret = parse_secret_ref("env:CERTFLEET_TEST_PW").resolve()
    assert secret.reveal() == value


def test_missing_env_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CERTFLEET_TEST_MISSING", raising=False)
    with pytest.raises(SecretError) as info:
        parse_secret_ref("env:CERTFLEET_TEST_MISSING").resolve()
    assert "CERTFLEET_TEST_MISSING" in str(info.value)
    assert "is not set" in str(info.value)


def test_empty_env_variable_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CERTFLEET_TEST_EMPTY", "")
    with pytest.raises(SecretError) as info:
        parse_secret_ref("env:CERTFLEET_TEST_EMPTY").resolve()
    assert "CERTFLEET_TEST_EMPTY is empty" in str(info.value)


# ------------------------------------------------------------------------ keyring:


def test_keyring_reference_resolves(memory_keyring: MemoryKeyring) -> None:
    value = unique()
    memory_keyring.set_password("corp/certfleet", "admin", value)
    secret = parse_secret_ref("keyring:corp/certfleet/admin").resolve()
    assert secret.reveal() == value


def test_keyring_without_the_password_says_how_to_set_it(memory_keyring: MemoryKeyring) -> None:
    with pytest.raises(SecretError) as info:
        parse_secret_ref("keyring:certfleet/admin").resolve()
    message = str(info.value)
    assert "'certfleet'" in message and "'admin'" in message
    assert "keyring set certfleet admin" in message
    assert "env:" in message


def test_keyring_backend_failure_becomes_secret_error(locked_keyring: LockedKeyring) -> None:
    with pytest.raises(SecretError) as info:
        parse_secret_ref("keyring:certfleet/admin").resolve()
    message = str(info.value)
    assert "KeyringLocked" in message
    assert "keyring set certfleet admin" in message


def test_keyring_fixture_restores_the_previous_backend() -> None:
    before = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    keyring.set_keyring(before)
    assert keyring.get_keyring() is before


# --------------------------------------------------------------------------- file:


def secret_file(tmp_path: Path, content: str, mode: int) -> Path:
    path = tmp_path / f"secret-{uuid.uuid4().hex}"
    path.write_text(content, encoding="utf-8", newline="")
    path.chmod(mode)
    return path


def test_file_reference_mode_0600_is_accepted(tmp_path: Path) -> None:
    value = unique()
    path = secret_file(tmp_path, value + "\n", 0o600)
    assert parse_secret_ref(f"file:{path}").resolve().reveal() == value


def test_file_reference_mode_0400_is_accepted(tmp_path: Path) -> None:
    value = unique()
    path = secret_file(tmp_path, value, 0o400)
    assert parse_secret_ref(f"file:{path}").resolve().reveal() == value


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_file_reference_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    value = unique()
    path = secret_file(tmp_path, value, mode)
    with pytest.raises(SecretError) as info:
        parse_secret_ref(f"file:{path}").resolve()
    message = str(info.value)
    assert f"chmod 600 {path}" in message
    assert f"{mode:04o}" in message
    assert value not in message


def test_file_reference_strips_exactly_one_trailing_newline(tmp_path: Path) -> None:
    value = unique()
    # the second newline would be part of the value: a control character, refused
    with pytest.raises(SecretError, match="control character"):
        parse_secret_ref(f"file:{secret_file(tmp_path, value + chr(10) * 2, 0o600)}").resolve()
    crlf = secret_file(tmp_path, value + "\r\n", 0o600)
    assert parse_secret_ref(f"file:{crlf}").resolve().reveal() == value


@pytest.mark.parametrize("content", ["", "\n"])
def test_empty_secret_file_is_an_error(tmp_path: Path, content: str) -> None:
    path = secret_file(tmp_path, content, 0o600)
    with pytest.raises(SecretError, match="is empty"):
        parse_secret_ref(f"file:{path}").resolve()


def test_missing_secret_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match="does not exist"):
        parse_secret_ref(f"file:{tmp_path / 'nope'}").resolve()


def test_secret_file_that_is_a_directory_is_an_error(tmp_path: Path) -> None:
    folder = tmp_path / "dir"
    folder.mkdir(mode=0o700)
    with pytest.raises(SecretError):
        parse_secret_ref(f"file:{folder}").resolve()


def test_secret_file_follows_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    value = unique()
    path = secret_file(tmp_path, value, 0o600)
    assert parse_secret_ref(f"file:~/{path.name}").resolve().reveal() == value


# --------------------------------------------------------------------------- Secret


def test_secret_does_not_show_itself() -> None:
    value = unique()
    secret = Secret(value)
    assert repr(secret) == MASK
    assert str(secret) == MASK
    assert f"{secret}" == MASK
    assert value not in repr([secret, {"pw": secret}])
    assert secret.reveal() == value


def test_secret_equality_compares_values() -> None:
    value = unique()
    assert Secret(value) == Secret(value)
    assert Secret(value) != Secret(value + "x")
    assert Secret(value) != value  # a Secret is not equal to a str
    with pytest.raises(TypeError):
        hash(Secret(value))


# ------------------------------------------------------------------------ redaction


def test_every_secret_is_registered_for_redaction() -> None:
    value = unique()
    Secret(value)
    assert redact(f"login admin:{value} ok") == f"login admin:{MASK} ok"


def test_resolved_secrets_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    value = unique("tok")
    monkeypatch.setenv("CERTFLEET_TEST_TOKEN", value)
    parse_secret_ref("env:CERTFLEET_TEST_TOKEN").resolve()
    assert value not in redact(f"Authorization: Bearer {value}")


def test_register_secret_for_values_from_elsewhere() -> None:
    challenge = unique("scep-challenge")
    assert redact(challenge) == challenge
    register_secret(challenge)
    assert redact(f"<ChallengePassword>{challenge}</ChallengePassword>") == (
        f"<ChallengePassword>{MASK}</ChallengePassword>"
    )


def test_redaction_masks_every_occurrence() -> None:
    value = unique()
    register_secret(value)
    assert redact(f"{value} {value}{value}") == f"{MASK} {MASK}{MASK}"


def test_short_values_are_not_redacted() -> None:
    register_secret("ab3")
    register_secret("")
    assert redact("ab3 stays") == "ab3 stays"


def test_longest_secret_wins() -> None:
    short = unique("pw")
    long = short + "-and-more"
    register_secret(short)
    register_secret(long)
    assert redact(f"x {long} y") == f"x {MASK} y"
    assert redact(f"x {short} y") == f"x {MASK} y"


def test_escaped_forms_are_redacted_too() -> None:
    value = unique('we"ird<&>\\pw')
    register_secret(value)
    assert redact(json.dumps({"password": value})) == json.dumps({"password": MASK})
    assert value not in redact(value)
    escaped = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert MASK in redact(escaped.replace('"', "&quot;"))


def test_regex_metacharacters_are_literal() -> None:
    value = unique("a.b*c+(d)[e]")
    register_secret(value)
    assert redact("a-b-c") == "a-b-c"
    assert redact(value) == MASK


def test_redaction_is_thread_safe() -> None:
    values = [unique(f"t{i}") for i in range(200)]
    errors: list[BaseException] = []

    def register(chunk: list[str]) -> None:
        try:
            for value in chunk:
                register_secret(value)
                assert value not in redact(f"[{value}]")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=register, args=(values[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    text = " ".join(values)
    assert redact(text) == " ".join([MASK] * len(values))


def test_redaction_is_fast_enough_for_every_line() -> None:
    for _ in range(300):
        register_secret(unique())
    line = "device room-001: Services Add ok, fingerprint " + "ab" * 40
    # correctness only; the timing of this loop is what keeps it usable on every output line
    for _ in range(2_000):
        assert redact(line) == line


def test_os_environ_untouched_by_failed_lookups(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CERTFLEET_TEST_NEVER", raising=False)
    with pytest.raises(SecretError):
        parse_secret_ref("env:CERTFLEET_TEST_NEVER").resolve()
    assert "CERTFLEET_TEST_NEVER" not in os.environ


def test_longest_first_across_old_and_new_registrations() -> None:
    short = unique("overlap")
    register_secret(short)
    for _ in range(100):  # enough to fold the first ones into the compiled regex
        register_secret(unique())
    long = short + "-longer"
    register_secret(long)
    assert redact(f"[{long}] [{short}] [{long}{long}]") == f"[{MASK}] [{MASK}] [{MASK}{MASK}]"


def test_interleaved_registration_and_redaction_stay_correct() -> None:
    values = [unique(f"i{i}") for i in range(300)]
    for index, value in enumerate(values):
        register_secret(value)
        earlier = values[index // 2]
        assert redact(f"{value}|{earlier}|plain") == f"{MASK}|{MASK}|plain"


# ------------------------------------------- newlines and control characters in values


def _resolve_each_kind(value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                       backend: MemoryKeyring) -> dict[str, Any]:
    """Resolve ``value`` through env:, file: and keyring: references: the Secret or the
    SecretError each gives."""
    if "\x00" not in value:  # an environment variable cannot hold NUL
        monkeypatch.setenv("CF_CTRL_TEST", value)
    secret_file = tmp_path / "ctrl-secret"
    secret_file.write_bytes(value.encode())
    secret_file.chmod(0o600)
    backend.set_password("certfleet-ctrl", "admin", value)
    outcomes: dict[str, Any] = {}
    for ref in ("env:CF_CTRL_TEST", f"file:{secret_file}", "keyring:certfleet-ctrl/admin"):
        try:
            outcomes[ref] = parse_secret_ref(ref).resolve()
        except SecretError as exc:
            outcomes[ref] = exc
    return outcomes


@pytest.mark.parametrize("ending", ["\n", "\r\n"])
def test_one_trailing_newline_is_stripped_from_every_kind_of_reference(
    ending: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, memory_keyring: MemoryKeyring
) -> None:
    # a CI secret or a file written with `echo` ends with a newline; it is not part of it
    outcomes = _resolve_each_kind("tok-3f9a-secret" + ending, tmp_path, monkeypatch,
                                  memory_keyring)
    for ref, outcome in outcomes.items():
        assert isinstance(outcome, Secret), (ref, outcome)
        assert outcome.reveal() == "tok-3f9a-secret"


@pytest.mark.parametrize("value", ["tok-3f9a-secret\n\n", "tok-3f9a\r-secret", "tok\t3f9a-secret",
                                   "tok-3f9a\x1b[31m-secret", "tok-3f9a-secret\x00", "\ntok-3f9a",
                                   "tok-3f9a\x7f-secret", "tok-3f9a\x85-secret"])
def test_other_control_characters_are_refused_naming_the_reference_not_the_value(
    value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, memory_keyring: MemoryKeyring
) -> None:
    outcomes = _resolve_each_kind(value, tmp_path, monkeypatch, memory_keyring)
    for ref, outcome in outcomes.items():
        if ref.startswith("env:") and "\x00" in value:
            continue  # not set
        assert isinstance(outcome, SecretError), (ref, outcome)
        message = str(outcome)
        assert ref in message and "control character" in message
        assert "3f9a" not in message


def test_a_control_character_in_a_secret_is_an_input_error_before_any_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from certfleet.cli.main import app

    inventory = tmp_path / "inv.yaml"
    inventory.write_text("defaults: {username: admin, password: 'env:CF_CTRL_PW', "
                         "verify: insecure}\ndevices:\n  room-1: {host: 127.0.0.1, port: 9}\n")
    monkeypatch.setenv("CF_CTRL_PW", "pw-7c1e\r\nX-Injected: 1")
    result = CliRunner().invoke(app, ["status", "-i", str(inventory), "-o", "json"])
    assert result.exit_code == 2
    assert "env:CF_CTRL_PW" in result.output and "7c1e" not in result.output


# -------------------------------------------------------- passphrases that encrypt keys


def test_a_passphrase_too_short_to_mean_anything_is_refused_naming_the_reference(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from certfleet.fleet.secrets import MIN_PASSPHRASE

    monkeypatch.setenv("CF_SHORT_PASS", "x" * (MIN_PASSPHRASE - 1))
    with pytest.raises(SecretError) as info:
        parse_secret_ref("env:CF_SHORT_PASS").resolve_passphrase()
    assert "env:CF_SHORT_PASS" in str(info.value) and f"{MIN_PASSPHRASE} characters" in str(
        info.value)
    assert "xxxxxxx" not in str(info.value)
    monkeypatch.setenv("CF_SHORT_PASS", "x" * MIN_PASSPHRASE)
    assert parse_secret_ref("env:CF_SHORT_PASS").resolve_passphrase().reveal() == "x" * 8


# ------------------------------------------------------- JSON output: one search, same text

_SECRET_CHARS = st.characters(codec="utf-8", exclude_categories=("Cs",))


def _secrets(max_size: int) -> st.SearchStrategy[str]:
    """Random secrets that start with a snowman: the registry is the process's, and a random
    "room" or "0000" registered here would be masked in the texts of every later test."""
    return st.text(_SECRET_CHARS, min_size=3, max_size=max_size - 1).map(lambda t: "\u2603" + t)


@settings(max_examples=300, deadline=None)
@given(
    secret=_secrets(12),
    before=st.text(max_size=6),
    after=st.text(max_size=6),
    form=st.sampled_from(["plain", "repr", "bytes-repr", "json", "newline", "key", "url"]),
)
def test_dumps_scrubbed_is_json_of_the_scrubbed_data(secret: str, before: str, after: str,
                                                     form: str) -> None:
    """The fast JSON path writes exactly what scrubbing every string first wrote, and never
    the secret, however the data quotes it (as a key, repr'd by an HTTP library with a
    newline, in a URL's userinfo): no decoded string of it holds the secret."""
    from certfleet.fleet.masking import dumps_scrubbed, scrub_data

    register_secret(secret)
    quoted = {
        "plain": secret,
        "repr": repr(secret + "\n"),
        "bytes-repr": f"Illegal header value {(secret + chr(10)).encode()!r}",
        "json": json.dumps(secret),
        "newline": secret + "\r\n",
        "key": secret,
        "url": f"https://admin:{secret}@ca.example.com/scep",
    }[form]
    text = before + quoted + after
    data: Any = {"device": "room-1", "calls": [{"error": text, "n": 3}], "ok": True}
    if form == "key":
        data = {text: [1, 2.5, None]}
    assert dumps_scrubbed(data) == json.dumps(scrub_data(data))
    assert all(secret not in text for text in _texts(json.loads(dumps_scrubbed(data))))


def _texts(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in (k, *_texts(v))]
    if isinstance(value, list):
        return [t for item in value for t in _texts(item)]
    return [value] if isinstance(value, str) else []


def test_dumps_scrubbed_leaves_clean_data_as_json_dumps_writes_it() -> None:
    from certfleet.fleet.masking import dumps_scrubbed

    register_secret("a-registered-password-1")
    data = {"device": "room-1", "facts": {"subject": "CN=room-1 \u00e9\u202e", "n": [1, None]}}
    assert dumps_scrubbed(data) == json.dumps(data)
    assert dumps_scrubbed({"e": "x a-registered-password-1\n"}) == '{"e": "x ********\\n"}'


@settings(max_examples=400, deadline=None)
@given(
    secret=_secrets(40),
    before=st.text(max_size=20),
    after=st.text(max_size=20),
)
def test_a_registered_secret_is_masked_wherever_it_starts(secret: str, before: str,
                                                         after: str) -> None:
    """Texts are screened by aligned pieces before the regex runs: a secret of any length,
    at any offset from the pieces' alignment, is still found and masked."""
    register_secret(secret)
    assert secret not in redact(before + secret + after)
    assert MASK in redact(before + secret + after)


def test_many_registered_tokens_are_each_masked() -> None:
    """With a run's worth of session tokens registered (most waiting in no regex yet, the rest
    folded into it), each is masked in a long text and a clean text comes back as it is."""
    tokens = [uuid.uuid4().hex + uuid.uuid4().hex[:n % 9] for n in range(300)]
    for token in tokens:
        register_secret(token)
    clean = "room-001 ok " * 200  # (other tests' secrets may be masked in it: not asserted)
    for n, token in enumerate(tokens):
        text = clean[: n % 17] + token + clean
        shown = redact(text)
        assert token not in shown and MASK in shown
        assert len(shown) <= len(text) - len(token) + len(MASK)


def test_a_value_registered_again_keeps_every_form_masked() -> None:
    """A login's token is registered once per device of a run: the second and later
    registrations change nothing, and each form of the value stays masked."""
    token = "again" + uuid.uuid4().hex + '"<&\n'
    register_secret(token)
    register_secret(token)
    for form in (token, json.dumps(token)[1:-1], token.rstrip("\n")):
        assert token.rstrip("\n") not in redact("x" * 40 + form + "y" * 9)
    assert secret_in_json(json.dumps({"k": "w" * 21 + token}))


def test_a_redactor_finds_its_values_with_few_and_with_many_registered() -> None:
    """The screen searches for each value while they are few and compares pieces of the
    text once they are many: either way, every value is found at any offset, and a text
    without one is left as it is."""
    from certfleet.fleet.secrets import _FEW, _Redactor

    redactor = _Redactor()
    values = [f"value-{n:02d}-" + uuid.uuid4().hex for n in range(_FEW * 2)]
    clean = "nothing secret here, " * 20
    for count, value in enumerate(values, start=1):
        redactor.add({value})
        for seen in values[:count]:
            for offset in (0, 3, 7, 8, 13):
                text = clean[:offset] + seen + clean
                assert redactor.found(text)
                assert redactor.redact(text) == clean[:offset] + MASK + clean
        assert not redactor.found(clean) and redactor.redact(clean) == clean
