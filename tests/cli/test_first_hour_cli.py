"""The first hour with certfleet (issue 17 part 5): `ca init` with no options, `--version`,
and an example line in every verb's --help."""

from __future__ import annotations

import re
import socket
import stat
from pathlib import Path
from typing import Any

import pytest
import typer

from certfleet.cli.main import app
from certfleet.fleet import __version__


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """certfleet's data and config folders in tmp_path, no CA passphrase in the environment."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("CERTFLEET_CA_PASSPHRASE", raising=False)
    return tmp_path


def test_ca_init_with_no_options_makes_a_usable_ca_and_says_what_it_used(
    home: Path, cli: Any
) -> None:
    made = cli("ca", "init")
    assert made.exit_code == 0, made.output
    folder = home / "data" / "certfleet" / "ca"
    secret_file = home / "config" / "certfleet" / "ca-passphrase"
    assert (folder / "ca.pem").is_file() and (folder / "ca.key").is_file()
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((folder / "ca.key").stat().st_mode) == 0o600
    out = " ".join(made.stdout.split())
    assert f"key passphrase: file:{secret_file}" in out
    assert f"--ca-dir {folder} --ca-passphrase file:{secret_file}" in out
    assert f"certfleet lab CA on {socket.gethostname()}" in out
    passphrase = secret_file.read_text().strip()
    assert len(passphrase) >= 32 and passphrase not in made.output
    assert b"ENCRYPTED" in (folder / "ca.key").read_bytes()

    # the defaults are used by show and sign too, and the printed reference opens the key
    shown = cli("ca", "show", "-o", "json")
    assert shown.exit_code == 0, shown.output
    assert socket.gethostname() in shown.stdout
    again = cli("ca", "init")
    assert again.exit_code == 2 and "already holds a CA" in again.output
    assert secret_file.read_text().strip() == passphrase  # never overwritten


def test_ca_init_uses_the_environment_passphrase_when_it_is_set(
    home: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CERTFLEET_CA_PASSPHRASE", "a-passphrase-from-the-env-81")
    made = cli("ca", "init", "--dir", str(home / "lab"))
    assert made.exit_code == 0, made.output
    assert "key passphrase: env:CERTFLEET_CA_PASSPHRASE" in made.stdout
    assert not (home / "config").exists()
    assert "a-passphrase-from-the-env-81" not in made.output


def test_version(cli: Any) -> None:
    result = cli("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"certfleet {__version__}"
    assert re.fullmatch(r"\d+\.\d+(\.\d+)?\S*", __version__)


def _verbs() -> list[tuple[str, ...]]:
    root = typer.main.get_command(app)
    assert hasattr(root, "commands")
    found: list[tuple[str, ...]] = []

    def walk(group: Any, prefix: tuple[str, ...]) -> None:
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                walk(command, (*prefix, name))
            else:
                found.append((*prefix, name))

    walk(root, ())
    return found


@pytest.mark.parametrize("verb", _verbs(), ids=" ".join)
def test_every_verb_has_an_example_in_its_help(verb: tuple[str, ...], cli: Any) -> None:
    result = cli(*verb, "--help")
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    match = re.search(r"Example: (certfleet [^│]*)", text)
    assert match, f"certfleet {' '.join(verb)} --help has no example line"
    assert match[1].startswith("certfleet " + " ".join(verb)), match[1]


def test_the_root_help_says_where_to_start(cli: Any) -> None:
    result = cli("--help")
    assert result.exit_code == 0
    assert "Example: certfleet demo" in " ".join(result.stdout.split())


def test_shell_completion_is_documented_and_works(cli: Any) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "certfleet --install-completion" in readme
    shown = cli("--show-completion", "bash")
    assert shown.exit_code == 0, shown.output
    assert "complete " in shown.stdout and "COMP_WORDS" in shown.stdout
