"""What `certfleet` imports to start (issue 18): a verb pays for what it uses, so a run's
start-up stays small next to the work per device. These tests assert module sets, never time:
each runs the real CLI in a new interpreter (against roomsim over real TLS where it reads
devices) and lists what that process imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: runs `certfleet ARGV...` in this interpreter, then writes its exit code and the names of
#: every module it imported to the file named first
_WRAPPER = """
import json, sys
report, sys.argv = sys.argv[1], ["certfleet", *sys.argv[2:]]
from certfleet.cli.main import main
try:
    main()
    code = 0
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else 1
with open(report, "w") as out:
    json.dump({"code": code, "modules": sorted(sys.modules)}, out)
"""


def run_certfleet(tmp_path: Path, *args: str, loop: str | None = None
                  ) -> tuple[int, set[str], str]:
    """Exit code, imported modules and stdout of `certfleet ARGS` in a new interpreter, its
    stderr not a terminal (as in CI and in a pipe); ``loop`` sets CERTFLEET_EVENT_LOOP."""
    report = tmp_path / "modules.json"
    env = {k: v for k, v in os.environ.items()
           if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "PYTHONPATH", "CERTFLEET_EVENT_LOOP")}
    env["PYTHONPATH"] = str(ROOT)
    if loop is not None:
        env["CERTFLEET_EVENT_LOOP"] = loop
    done = subprocess.run([sys.executable, "-c", _WRAPPER, str(report), *args], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    found = json.loads(report.read_text())
    return int(found["code"]), set(found["modules"]), done.stdout + done.stderr


def loaded(modules: set[str], package: str) -> list[str]:
    return sorted(m for m in modules if m == package or m.startswith(package + "."))


def test_status_as_json_imports_no_pydantic_rich_or_x509(tmp_path: Path, sim: Any) -> None:
    """`status -o json` reads every device (the CA file of `verify: ca:` checked up front)
    without pydantic (typer 0.29 brought it: pyproject keeps typer below), without rich (it
    draws nothing: JSON on stdout, stderr not a terminal) and without cryptography's X.509
    layer (the CA file is checked by OpenSSL as the TLS context will load it)."""
    code, modules, output = run_certfleet(tmp_path, "status", "-i", str(sim.inventory_path),
                                          "-o", "json")
    assert code == 0, output
    document = json.loads(output[: output.rindex("}") + 1])
    assert [d["outcome"] for d in document["devices"]] == ["ok"] * 5
    assert all(d["facts"]["certificates"] for d in document["devices"])
    assert loaded(modules, "pydantic") == []
    assert loaded(modules, "rich") == []
    assert loaded(modules, "cryptography.x509") == []


def test_status_as_a_table_still_draws_with_rich(tmp_path: Path, sim: Any) -> None:
    """The other side: a table for people is drawn by rich (imported when drawing)."""
    code, modules, output = run_certfleet(tmp_path, "status", "-i", str(sim.inventory_path))
    assert code == 0, output
    assert "certificates per device" in output
    assert loaded(modules, "rich.table")
    assert loaded(modules, "pydantic") == []


def test_status_help_imports_no_pydantic_or_x509(tmp_path: Path) -> None:
    code, modules, output = run_certfleet(tmp_path, "status", "--help")
    assert code == 0, output
    assert "--expiring-within" in output
    assert loaded(modules, "pydantic") == []
    assert loaded(modules, "cryptography.x509") == []


def test_a_run_takes_uvloop_where_installed_and_asyncio_when_told(
        tmp_path: Path, sim: Any) -> None:
    """The run's loop (fleet/_loop.py): uvloop's where it is installed (a dependency on
    CPython off Windows), asyncio's own with CERTFLEET_EVENT_LOOP=asyncio. Both read every
    device the same way."""
    pytest.importorskip("uvloop")
    seen = {}
    for loop in (None, "asyncio"):
        code, modules, output = run_certfleet(tmp_path, "status", "-i", str(sim.inventory_path),
                                              "-o", "json", loop=loop)
        assert code == 0, output
        document = json.loads(output[: output.rindex("}") + 1])
        seen[loop] = [(d["device"], d["outcome"], len(d["facts"]["certificates"]))
                      for d in document["devices"]]
        assert ("uvloop" in modules) is (loop is None), loaded(modules, "uvloop")
    assert seen[None] == seen["asyncio"]
    assert [outcome for _, outcome, _ in seen[None]] == ["ok"] * 5
