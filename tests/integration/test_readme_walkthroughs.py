"""The README's three walkthroughs, run exactly as written (issue 17 part 6): each marked
code block (`<!-- walkthrough: NAME -->`) is run by bash -euo pipefail in a new folder while
the marked `serve` block runs a simulated fleet in the background, as a user would in two
shells. `certfleet` on the PATH is this checkout (a shim running `python -m certfleet.cli.main`). The
SCEP walkthrough enrolls against Debian's real scepserver when it is installed (the
`scep_server` fixture), else against roomsim's simulated SCEP responder."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def walkthrough(name: str) -> str:
    text = README.read_text()
    found = re.findall(rf"<!-- walkthrough: {re.escape(name)} -->\n```sh\n(.*?)```", text, re.S)
    assert len(found) == 1, f"README.md has {len(found)} blocks marked walkthrough: {name}"
    return str(found[0])


@pytest.fixture
def shell(tmp_path: Path) -> dict[str, str]:
    """The environment of the user's shells: certfleet on the PATH, nothing of ours set,
    data and config folders (journal, generated passphrases) inside tmp_path."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "certfleet"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m certfleet.cli.main "$@"\n')
    shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CERTFLEET_", "SCEP_"))}
    env.update({
        "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        "PYTHONPATH": f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}".rstrip(os.pathsep),
        "HOME": str(tmp_path / "home"),
        "XDG_DATA_HOME": str(tmp_path / "home" / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "home" / "config"),
        "COLUMNS": "200",
    })
    return env


@pytest.fixture
def folder(tmp_path: Path, shell: dict[str, str]) -> Iterator[Path]:
    """An empty folder with the README's `serve` block running in it (the first shell)."""
    work = tmp_path / "work"
    work.mkdir()
    serve = subprocess.Popen(["bash", "-euo", "pipefail", "-c", walkthrough("serve")],
                             cwd=work, env=shell, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, start_new_session=True)
    try:
        assert serve.stdout is not None
        deadline = time.monotonic() + 60
        seen = b""
        while b"ready" not in seen.split():
            left = deadline - time.monotonic()
            assert left > 0 and serve.poll() is None, f"sim serve did not get ready: {seen!r}"
            if select.select([serve.stdout], [], [], left)[0]:
                seen += os.read(serve.stdout.fileno(), 65536)
        yield work
    finally:
        if serve.poll() is None:
            os.killpg(serve.pid, signal.SIGINT)  # the session this test started, only
            try:
                serve.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(serve.pid, signal.SIGKILL)
                serve.wait()


def run(name: str, folder: Path, env: dict[str, str]) -> str:
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", walkthrough(name)], cwd=folder,
                          env=env, capture_output=True, text=True, timeout=240, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    return output


@pytest.mark.slow
def test_walkthrough_push_a_corporate_ca(folder: Path, shell: dict[str, str]) -> None:
    out = run("push-ca", folder, shell)
    assert "push-ca: 4 changed  (dry run: nothing was written)" in out
    assert "push-ca: 4 changed  run" in out and "push-ca: 4 ok" in out
    doc = json.loads((folder / "push-ca.json").read_text())
    assert {d["outcome"] for d in doc["devices"]} == {"ok"}
    # ca init with no passphrase option generated one, said where, and never printed it
    generated = Path(shell["XDG_CONFIG_HOME"]) / "certfleet" / "ca-passphrase"
    assert f"key passphrase: file:{generated}" in " ".join(out.split())
    assert generated.read_text().strip() not in out


@pytest.mark.slow
def test_walkthrough_scep_enrollment_then_dot1x_and_wifi(
    folder: Path, shell: dict[str, str], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from certfleet.roomsim.scep_responder import SimScepResponder

    challenge_file = tmp_path / "scep-challenge"
    responder: SimScepResponder | None = None
    try:
        real = request.getfixturevalue("scep_server")
        url, sha256, challenge = real.url, real.ca_sha256, real.challenge
    except pytest.skip.Exception:
        responder = SimScepResponder(challenge="walkthrough-challenge-5521").start()
        url, sha256, challenge = responder.url, responder.ca_sha256, "walkthrough-challenge-5521"
    try:
        fd = os.open(challenge_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(challenge + "\n")
        env = {**shell, "SCEP_URL": url, "SCEP_CA_SHA256": sha256,
               "SCEP_CHALLENGE_REF": f"file:{challenge_file}"}
        out = run("scep", folder, env)
    finally:
        if responder is not None:
            responder.stop()
    assert "enroll: 4 changed  (dry run: nothing was written)" in out
    assert "enroll: 4 changed  run" in out
    assert "4 profile(s)" in out
    assert "dot1x: 4 changed  run" in out and "wifi: 4 changed  run" in out
    assert "802.1X" in out.split("status --limit room-001")[-1] or "802.1X" in out
    assert challenge not in out
    if responder is not None:
        assert len(responder.issued) == 4


@pytest.mark.slow
def test_walkthrough_nightly_rotation(folder: Path, shell: dict[str, str]) -> None:
    out = run("nightly", folder, shell)
    assert "rotate: 4 changed" in out
    doc = json.loads((folder / "rotate.json").read_text())
    assert {d["outcome"] for d in doc["devices"]} == {"ok"}
    assert all(re.fullmatch(r"not due: \d+ days left, renew-before 30d", d["message"])
               for d in doc["devices"])
    assert (folder / "rotate.xml").read_text().startswith("<?xml")
    assert "<html" in (folder / "fleet.html").read_text().lower()
    assert (folder / "journal.sqlite").is_file()
