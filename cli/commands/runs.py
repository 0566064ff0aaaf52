"""certfleet runs list|show|keys|drop-key|resume — the run journal."""

from __future__ import annotations

from pathlib import Path

import typer
from cryptography import x509
from rich.table import Table
from rich.text import Text

from certfleet.fleet.errors import InputError
from certfleet.fleet.journal import Journal, KeyRecord
from certfleet.fleet.pki.certs import oneline_name
from certfleet.fleet.resumable import resume_point

from .. import render
from ..options import Common, JournalOpt, OutputFormat, OutputOpt, session_of
from ..runtime import execute, finish, guarded, open_journal_at

app = typer.Typer(help="The run journal: what ran, per device, and resuming.",
                  no_args_is_help=True)


def _open(journal: Path | None) -> Journal:
    return open_journal_at(journal)


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


def _key_entry(journal: Journal, record: KeyRecord) -> dict[str, object]:
    subject = not_after = None
    if record.cert_pem:
        try:
            leaf = x509.load_pem_x509_certificate(record.cert_pem.encode())
        except ValueError:
            pass
        else:
            subject = oneline_name(leaf.subject)
            not_after = leaf.not_valid_after_utc.isoformat()
    return {
        "id": record.id, "device": record.device, "purposes": list(record.purposes),
        "state": record.state, "run_id": record.run_id, "key_kind": record.key_kind,
        "created": record.created, "updated": record.updated,
        "public_key_sha256": record.public_sha256, "certificate_subject": subject,
        "certificate_not_after": not_after,
        "abandoned_because": journal.abandon_reason(record)
        if record.state == "abandoned" else None,
    }


@app.command("keys")
@guarded
def keys(
    journal: JournalOpt = None,
    show_all: bool = typer.Option(
        False, "--all", help="Also the keys that are done or abandoned."
    ),
    device: str | None = typer.Option(None, "--device", help="Only this device's keys."),
    output: OutputOpt = OutputFormat.table,
) -> None:
    """The keys in the journal that a later rotate would reuse (generated, submitted, signed,
    uploaded, activated): a rotation that has not finished. `runs drop-key ID` gives one up."""
    with _open(journal) as j:
        records = [r for r in j.keys(open_only=not show_all)
                   if device is None or r.device == device]
        entries = [_key_entry(j, r) for r in records]
        path = j.path
    if output is OutputFormat.json:
        render.emit_json({"schema": "certfleet/keys/v1", "journal": str(path), "keys": entries})
        return
    if not entries:
        render.stdout().print(Text(f"no {'' if show_all else 'open '}keys in {path}"))
        return
    table = Table(title=Text(f"keys in {path}"), title_justify="left")
    for name in ("id", "device", "purposes", "state", "run", "updated", "certificate / why"):
        table.add_column(name, overflow="fold")
    for record, e in zip(records, entries, strict=True):
        cert = (f"{e['certificate_subject']} until {str(e['certificate_not_after'])[:10]}"
                if e["certificate_subject"] else "")
        why = e["abandoned_because"] or cert
        table.add_row(*(Text(str(v)) for v in (
            record.id, record.device, ",".join(record.purposes), record.state,
            record.run_id, record.updated[:19], why)))
    render.stdout().print(table)


@app.command("drop-key")
@guarded
def drop_key(
    key_ids: list[int] = typer.Argument(..., help="Key ids, as `runs keys` shows them."),
    journal: JournalOpt = None,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask."),
) -> None:
    """Give up keys whose rotation will not be finished (e.g. a certificate that is stuck
    waiting, or one that will never be signed): they are marked abandoned, kept in the journal,
    and the next rotate of their device makes a new key."""
    with _open(journal) as j:
        records = [j.key(key_id) for key_id in key_ids]
        for record in records:
            if not record.open:
                raise InputError(f"key {record.id} ({record.device}) is {record.state}, not "
                                 "waiting to be used: nothing to drop")
        if not yes:
            listed = ", ".join(f"{r.id} ({r.device}, {r.state})" for r in records)
            typer.confirm(f"Abandon key(s) {listed}? The next rotate makes new ones",
                          abort=True)
        with j.lock("certfleet runs drop-key"):
            for record in records:
                j.abandon_key(record.id, "dropped with `certfleet runs drop-key`")
    for record in records:
        render.stdout().print(Text(f"key {record.id} ({record.device}): abandoned"))


@app.command("resume")
@guarded
def resume(
    ctx: typer.Context,
    run_id: str = typer.Argument("last", help="The run to finish, or 'last'."),
    journal: JournalOpt = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Finish a run that was interrupted or had failures: the same verb and options, on the
    devices that did not end ok or changed. Keys already generated are used, not made anew."""
    point = resume_point(journal, run_id)
    if point.plan is None or not point.devices:
        render.stdout().print(f"run {point.run_id}: every device finished; nothing to resume")
        return
    render.note(f"resuming run {point.run_id} on {len(point.devices)} device(s)")
    common = Common(inventory=point.inventory, limit=[d.name for d in point.devices],
                    output=output, journal=journal, session=session_of(ctx))
    finish(execute(point.plan, point.devices, common, resumed_from=point.run_id), common)
