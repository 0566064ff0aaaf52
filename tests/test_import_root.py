"""One import root (issue 16 item 10): the wheel installs ``certfleet`` and nothing else at
the top level, so ``pip install certfleet`` cannot shadow (or be shadowed by) someone else's
``cli``, ``fleet`` or ``roomsim``; every package folder of the tree is in it, with its data."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("cli", "fleet", "roomsim")

pytestmark = pytest.mark.slow


def tree_packages() -> set[str]:
    found = {"certfleet"}
    for part in PARTS:
        for init in (ROOT / part).rglob("__init__.py"):
            found.add("certfleet." + ".".join(init.parent.relative_to(ROOT).parts))
    return found


def build_wheel(tmp_path: Path) -> Path:
    """A wheel of a copy of the tree (an in-tree build would leave build/ in the checkout)."""
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in ("certfleet", *PARTS):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    out = tmp_path / "wheels"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(src)],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = out.glob("certfleet-*.whl")
    return wheel


def test_the_wheel_has_one_top_level_import_name(tmp_path: Path) -> None:
    with zipfile.ZipFile(build_wheel(tmp_path)) as wheel:
        names = wheel.namelist()
        info = next(n for n in names if n.endswith(".dist-info/RECORD")).rsplit("/", 1)[0]
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
    top = {name.split("/", 1)[0] for name in names if not name.startswith(info)}
    assert top == {"certfleet"}
    packages = {name.rsplit("/", 1)[0].replace("/", ".") for name in names
                if name.endswith("/__init__.py")}
    assert packages == tree_packages()  # pyproject lists every package folder of the tree
    for data in ("certfleet/py.typed", "certfleet/fleet/py.typed",
                 "certfleet/fleet/xapi/releases.json", "certfleet/__main__.py",
                 "certfleet/roomsim/__main__.py"):
        assert data in names
    assert "certfleet = certfleet.cli.main:main" in entry_points


def test_a_source_checkout_imports_its_own_parts(tmp_path: Path) -> None:
    """Run from the checkout, ``certfleet.<part>`` is the checkout's folder, whatever copy
    is installed, and ``python -m certfleet`` is the command."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = ("import certfleet, certfleet.cli.main, certfleet.fleet.errors, certfleet.roomsim;"
            "print(certfleet.__version__);"
            "print(certfleet.cli.main.__file__); print(certfleet.fleet.errors.__file__);"
            "print(certfleet.roomsim.__file__)")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60, check=True)
    version, *paths = done.stdout.split()
    assert paths == [str(ROOT / "cli" / "main.py"), str(ROOT / "fleet" / "errors.py"),
                     str(ROOT / "roomsim" / "__init__.py")]
    shown = subprocess.run([sys.executable, "-m", "certfleet", "--version"], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=60, check=True)
    assert shown.stdout.strip() == f"certfleet {version}"
