"""certfleet runs list|show|resume — the run journal."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from cli import render
from cli.options import JournalOpt, OutputFormat, OutputOpt
from cli.runtime import guarded
from fleet.journal import Journal

app = typer.Typer(help="The run journal: what ran, per device, and resuming.",
                  no_args_is_help=True)


def _open(journal: Path | None) -> Journal:
    return Journal.open(journal)


@app.command("list")
@guarded
def list_runs(
    journal: JournalOpt = None,
    last: int = typer.Option(20, "--last", "-n", min=1, help="How many runs to show."),
    output: OutputOpt = OutputFormat.table,
) -> None:
    """The newest runs first, with their outcome counts."""
    with _open(journal) as j:
        runs = j.runs(last)
    if output is OutputFormat.json:
        render.emit_json({"schema": "certfleet/runs/v1", "runs": [
            {"run_id": r.run_id, "verb": r.verb, "command": r.command, "started": r.started,
             "finished": r.finished, "status": r.status, "exit_code": r.exit_code,
             "dry_run": r.dry_run, "resumed_from": r.resumed_from, "summary": r.counts}
            for r in runs]})
        return
    table = Table(title=f"runs in {j.path}", title_justify="left")
    for name in ("run", "verb", "started", "status", "exit", "devices"):
        table.add_column(name, overflow="fold")
    for r in runs:
        counts = ", ".join(f"{n} {k}" for k, n in r.counts.items() if n)
        status = r.status + (" (dry run)" if r.dry_run else "")
        style = "red" if r.status == "running" else ""
        table.add_row(r.run_id, r.verb, r.started[:19], Text(status, style=style),
                      "" if r.exit_code is None else str(r.exit_code), counts)
    render.stdout().print(table)


@app.command("show")
@guarded
def show(
    run_id: str = typer.Argument("last", help="A run id (or its start), or 'last'."),
    journal: JournalOpt = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """One run: per device outcome, error, fingerprints, and the steps it took."""
    with _open(journal) as j:
        run = j.run(run_id)
        devices = j.device_rows(run.run_id)
        steps = j.steps_of(run.run_id)
    if output is OutputFormat.json:
        render.emit_json({"schema": "certfleet/run-record/v1", "run_id": run.run_id,
                          "verb": run.verb, "command": run.command, "status": run.status,
                          "started": run.started, "finished": run.finished,
                          "exit_code": run.exit_code, "summary": run.counts,
                          "devices": devices, "steps": steps})
        return
    render.stdout().print(Text(f"run {run.run_id}: {run.command}", style="bold"), soft_wrap=True)
    render.stdout().print(f"started {run.started}, {run.status}"
                          + (f", exit {run.exit_code}" if run.exit_code is not None else ""))
    table = Table(title_justify="left")
    for name in ("device", "outcome", "before", "after", "error / steps"):
        table.add_column(name, overflow="fold")
    by_device: dict[str, list[str]] = {}
    for s in steps:
        by_device.setdefault(s["device"], []).append(f"{s['step']} {s['detail']}".strip())
    for d in devices:
        detail = d["error"] or "\n".join(by_device.get(d["device"], []))
        table.add_row(render.line(d["device"]), d["outcome"],
                      "\n".join(d["fingerprints_before"] or []),
                      "\n".join(d["fingerprints_after"] or []), detail)
    render.stdout().print(table)


@app.command("resume")
@guarded
def resume(
    run_id: str = typer.Argument("last", help="The run to finish, or 'last'."),
    journal: JournalOpt = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Finish a run that was interrupted or had failures: the same verb and options, on the
    devices that did not end ok or changed. Keys already generated are used, not made anew."""
    from cli.commands.resume import resume_run

    resume_run(run_id, journal, output)
