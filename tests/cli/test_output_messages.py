"""Messages name what the user gave, safely (issue 14 item 19): a device name with a newline
or control characters never breaks or steers a line; `--limit @nosuch` is named as typed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


@pytest.fixture
def inventory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MESSAGES_TEST_PW", "password-for-message-tests")
    path = tmp_path / "inv.yaml"
    path.write_text(
        "defaults:\n"
        "  username: admin\n"
        "  password: env:MESSAGES_TEST_PW\n"
        "  verify: system\n"
        "devices:\n"
        "  room-1: {host: 127.0.0.1, port: 9}\n"
    )
    return path


@pytest.mark.parametrize("verb", [("inventory", "list"), ("inventory", "check"), ("status",)])
def test_a_device_name_with_a_newline_or_escapes_is_shown_on_one_safe_line(
    cli: Any, tmp_path: Path, verb: tuple[str, ...]
) -> None:
    path = tmp_path / "hostile-names.yaml"
    path.write_text(
        "defaults: {username: admin, password: 'env:MESSAGES_TEST_PW', verify: system}\n"
        "devices:\n"
        '  "room\\e[31m-1\\nfake-ok \\u202e \\e]8;;https://127.0.0.1/\\a": '
        "{host: 127.0.0.1, port: 9}\n"
    )
    result = cli(*verb, "-i", str(path))
    assert result.exit_code in (0, 1, 2)
    assert not RAW.search(result.output), repr(result.output)
    assert not any(line.startswith("fake-ok") for line in result.output.splitlines())


def test_an_unknown_limit_set_is_named_as_typed(cli: Any, inventory: Path) -> None:
    result = cli("status", "-i", str(inventory), "--limit", "@nosuch")
    assert result.exit_code == 2
    assert "@nosuch" in result.stderr
    assert "@failed:" not in result.stderr  # it used to answer about @failed


def test_limit_failed_without_a_previous_run_names_the_term(cli: Any, inventory: Path) -> None:
    result = cli("status", "-i", str(inventory), "--limit", "room-1,@failed")
    assert result.exit_code == 2
    assert "--limit" in result.stderr and "@failed" in result.stderr
    assert "no previous run" in result.stderr
