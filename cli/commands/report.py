"""certfleet report --html FILE — the fleet's certificates, their expiry and the last run, as
one self-contained HTML page (see cli/report_html.py)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import typer

from certfleet.fleet.pki.keys import write_atomic
from certfleet.fleet.plans.status import Status
from certfleet.fleet.results import RunResult
from certfleet.fleet.runner import DEFAULT_PARALLEL

from .. import render
from ..options import (
    Common,
    InventoryOpt,
    JournalOpt,
    LimitOpt,
    OutputFormat,
    ParallelOpt,
    TimeoutOpt,
    session_of,
)
from ..report_html import build_report
from ..runtime import check_output_path, execute, finish, guarded, open_journal, select

DEFAULT_TITLE = "certfleet certificate report"


def _told(path: Path, *, written: bool) -> Callable[[RunResult], None]:
    def show(run: RunResult) -> None:
        failed = [r for r in run.devices if r.error]
        if failed:
            render.run_table_failures(failed)
        if written:
            render.stdout().print(render.text(f"report written to {path}", style="bold"),
                                  soft_wrap=True)
        render.summary(run)

    return show


@guarded
def report(
    ctx: typer.Context,
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
    check_output_path(html_file, "--html")
    common = Common(inventory, limit, parallel, OutputFormat.table, False, device_timeout, journal,
                    session=session_of(ctx))
    _, devices = select(common)
    run = execute(Status(), devices, common)
    with open_journal(common) as j:
        others = [r for r in j.runs(2) if r.run_id != run.run_id]
        previous = others[0] if others else None
        previous_devices = j.device_rows(previous.run_id) if previous else []
    page = build_report(run, previous, previous_devices, title=title,
                        generated=dt.datetime.now(dt.UTC))
    unwritten: list[str] = []
    try:
        write_atomic(html_file, page.encode("utf-8"), mode=0o644)
    except OSError as exc:  # checked before the run, and yet: the run is still reported
        unwritten.append(f"--html {html_file}: cannot write it: {exc.strerror or exc}")
    finish(run, common, table=_told(html_file, written=not unwritten), unwritten=unwritten)
