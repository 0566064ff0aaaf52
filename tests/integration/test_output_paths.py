"""Output files (issue 14 item 7): a path certfleet could not write is refused before any
device is contacted (exit 2, naming it); one that fails after the run still leaves the run's
record: the other outputs are written, the error is named, the exit is not 0."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from certfleet.fleet.pki.local_ca import LocalCa


def _ca_count(sim: Any) -> dict[str, int]:
    return {name: len(device.store.ca_list) for name, device in sim.devices.items()}


@pytest.mark.parametrize("where", ["a-folder", "under-a-file"])
def test_an_unwritable_junit_path_is_refused_before_any_device(
    sim: Any, corp_ca: tuple[LocalCa, Path], cli: Any, tmp_path: Path, where: str
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder\n")
    target = tmp_path if where == "a-folder" else blocker / "junit.xml"
    before = _ca_count(sim)
    result = cli("--junit", str(target), "push-ca", str(corp_ca[1]), "-i",
                 str(sim.inventory_path), "-o", "json")
    assert result.exit_code == 2, result.output
    assert "--junit" in result.stderr and str(target) in result.stderr
    assert "Traceback" not in result.output and result.stdout == ""
    assert _ca_count(sim) == before  # no device was changed
    assert cli("runs", "list", "-o", "json").json()["runs"] == []  # nor even started


def test_an_unwritable_html_report_is_refused_before_any_device(
    sim: Any, cli: Any, tmp_path: Path
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    result = cli("report", "--html", str(blocker / "r.html"), "-i", str(sim.inventory_path))
    assert result.exit_code == 2 and "--html" in result.stderr
    assert cli("runs", "list", "-o", "json").json()["runs"] == []


BREAK = """
import pathlib, shutil, sys
out = pathlib.Path(sys.argv[1])
if out.is_dir():
    shutil.rmtree(out)
    out.write_text("the folder is gone: a file now")
"""


def test_a_junit_file_that_fails_after_the_run_loses_nothing_else(
    sim: Any, corp_ca: tuple[LocalCa, Path], cli: Any, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    hook = tmp_path / "break.py"
    hook.write_text(BREAK)  # the folder is checked before the run, and broken during it
    result = cli("--junit", str(out / "junit.xml"),
                 "--on-changed", f"{sys.executable} {hook} {out}",
                 "push-ca", str(corp_ca[1]), "-i", str(sim.inventory_path), "-o", "json")
    assert "Traceback" not in result.output
    document = json.loads(result.stdout)  # the run's JSON is written all the same
    assert document["summary"]["changed"] == len(sim.devices)
    assert result.exit_code == 1, result.output
    assert f"--junit {out / 'junit.xml'}" in result.stderr
    shown = cli("runs", "show", "last", "-o", "json").json()
    assert {d["outcome"] for d in shown["devices"]} == {"changed"}
