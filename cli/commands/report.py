"""certfleet report --html FILE — the fleet's certificates, their expiry and the last run, as
one self-contained HTML page (see cli/report_html.py)."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from pathlib import Path

import typer
from rich.text import Text

from cli import render
from cli.options import (
    Common,
    InventoryOpt,
    JournalOpt,
    LimitOpt,
    OutputFormat,
    ParallelOpt,
    TimeoutOpt,
)
from cli.report_html import build_report
from cli.runtime import execute, finish, guarded, open_journal, select
from fleet.errors import InputError
from fleet.pki.keys import write_atomic
from fleet.plans.status import Status
from fleet.results import RunResult
from fleet.runner import DEFAULT_PARALLEL

DEFAULT_TITLE = "certfleet certificate report"


def _check_target(path: Path) -> None:
    """A file we could write, checked before any device is read (exit 2 otherwise)."""
    if path.is_dir():
        raise InputError(f"--html {path}: is a folder; give a file name")
    folder = path.parent
    if not folder.is_dir():
        raise InputError(f"--html {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"--html {path}: the folder {folder} is not writable")


def _told(path: Path) -> Callable[[RunResult], None]:
    def show(run: RunResult) -> None:
        failed = [r for r in run.devices if r.error]
        if failed:
            render.run_table_failures(failed)
        render.stdout().print(Text(f"report written to {path}", style="bold"), soft_wrap=True)
        render.summary(run)

    return show


@guarded
def report(
    html_file: Path = typer.Option(
        ..., "--html", help="Write the report to this file: one self-contained HTML page.",
        show_default=False,
    ),
    inventory: InventoryOpt = None,
    limit: LimitOpt = None,
    parallel: ParallelOpt = DEFAULT_PARALLEL,
    device_timeout: TimeoutOpt = 300.0,
    journal: JournalOpt = None,
    title: str = typer.Option(DEFAULT_TITLE, "--title", help="The page's title."),
) -> None:
    """Read every selected device (changes nothing) and write an HTML report: fleet summary,
    certificates with days left, expiries per week over the next year, and the last run."""
    _check_target(html_file)
    common = Common(inventory, limit, parallel, OutputFormat.table, False, device_timeout, journal)
    _, devices = select(common)
    run = execute(Status(), devices, common)
    with open_journal(common) as j:
        others = [r for r in j.runs(2) if r.run_id != run.run_id]
        previous = others[0] if others else None
        previous_devices = j.device_rows(previous.run_id) if previous else []
    page = build_report(run, previous, previous_devices, title=title,
                        generated=dt.datetime.now(dt.UTC))
    try:
        write_atomic(html_file, page.encode("utf-8"), mode=0o644)
    except OSError as exc:
        raise InputError(f"--html {html_file}: cannot write it: {exc}") from exc
    finish(run, common, table=_told(html_file))
