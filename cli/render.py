"""cli.render — the tables, lines and documents of a run, and the consoles all output goes through.

rich stays in ``cli/`` (``fleet/`` never imports it). Most of what certfleet shows is built here
and in the other ``cli/render*.py`` modules; a few verbs build their own small tables and lines
with rich (``runs``, ``renewal``, ``ca init``, ``demo``), and print them, like everything else,
through :func:`stdout` and :func:`stderr`, whose :class:`~cli.safe_console.SafeConsole` gives
the guarantees below to whatever it prints.

JSON goes to stdout as plain ``json.dumps`` of the engine's documents and never depends on
rich; tables go to stdout; progress, warnings and errors go to stderr, so ``-o json`` output
can be piped as it is. Every text passes the secret redactor on its way out, and is shown
literally: never read as markup, control characters as visible escapes (:mod:`cli.safe_text`).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from certfleet.fleet.inventory import Device, Inventory
from certfleet.fleet.journal import KnownFirmware
from certfleet.fleet.masking import dumps_scrubbed
from certfleet.fleet.plans.status import Expiring
from certfleet.fleet.results import DeviceResult, Outcome, RunResult, run_document
from certfleet.fleet.runner import DeviceFinished, Event

from .safe_text import scrub, scrub_data, visible

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

# rich is imported where something is drawn with it, not with this module: a run whose output
# is JSON and whose stderr is not a terminal draws nothing, and importing rich cost a sixth of
# `certfleet status -o json`'s start-up (issue 18). The consoles live in cli/safe_console.py.

OUTCOME_STYLE = {
    Outcome.OK: "green",
    Outcome.CHANGED: "yellow",
    Outcome.FAILED: "bold red",
    Outcome.UNREACHABLE: "red",
    Outcome.SKIPPED: "dim",
}


def text(value: object, style: str = "") -> Text:
    """A Text of device-, inventory- or file-provided data: shown literally and safely."""
    from rich.text import Text

    return Text(visible(scrub(str(value)), newlines=True), style=style)


def line(value: object, style: str = "") -> Text:
    """One line for people, whatever it quotes: a newline in a name is an escape too."""
    from rich.text import Text

    return Text(visible(scrub(str(value))), style=style)


def problem(message: str) -> None:
    """One of several problems, a line of its own under an error."""
    stderr().print(line(f"  {message}"))


def stdout() -> Console:
    from .safe_console import console

    return console(sys.stdout, soft_wrap=False)


def stderr() -> Console:
    from .safe_console import console

    return console(sys.stderr, soft_wrap=True)


def _terminal_stderr() -> Console | None:
    """:func:`stderr` if it is a terminal, else None -- without importing rich where rich
    could only say no: stderr is not a TTY and neither TTY_COMPATIBLE nor FORCE_COLOR (which
    rich reads) is set."""
    if "TTY_COMPATIBLE" not in os.environ and "FORCE_COLOR" not in os.environ:
        isatty = getattr(sys.stderr, "isatty", None)
        try:
            if isatty is None or not isatty():
                return None
        except ValueError:  # closed
            return None
    console = stderr()
    return console if console.is_terminal else None


def error(message: str) -> None:
    stderr().print(line(f"error: {message}", style="bold red"))


def warning(message: str) -> None:
    stderr().print(line(f"warning: {message}", style="yellow"))


def note(message: str) -> None:
    stderr().print(line(message, style="dim"))


def heading(message: str) -> None:
    stdout().rule(text(message, style="bold"))


def emit_json(document: Any) -> None:
    """Write a JSON document to stdout, secrets masked.

    Every value (and key) is scrubbed as *before* it is serialised (:func:`fleet.masking.
    dumps_scrubbed`: the text is searched for each secret's JSON form, and only a value that may
    hold one is scrubbed string by string, with :func:`cli.safe_text.scrub_data`): a secret is
    found as it is in the data, not missed in the escaped form JSON would give it (a token
    quoted with a ``\\n`` in an error message became ``\\\\n``).

    An object is written a key a line; a list (or iterator) of objects in it, an object a
    line, compact. So a run's document reads and greps as one device a line, is made with
    json's C encoder (``indent`` would use the pure-Python one: a tenth of a large run's CPU),
    and is written as it is made — a 10,000-device document is never one string in memory.
    """
    write = sys.stdout.write
    if not isinstance(document, dict):
        write(json.dumps(scrub_data(document), indent=2) + "\n")
        sys.stdout.flush()
        return
    write("{")
    for index, (key, value) in enumerate(document.items()):
        write(("\n  " if index == 0 else ",\n  ") + json.dumps(scrub(key)) + ": ")
        if isinstance(value, Iterator) or (
            isinstance(value, list) and value and all(isinstance(v, dict) for v in value)
        ):
            _emit_items(value)
        else:
            write(dumps_scrubbed(value))
    write("\n}\n" if document else "}\n")
    sys.stdout.flush()


def _emit_items(items: Iterable[Any]) -> None:
    write = sys.stdout.write
    opened = False
    for item in items:
        write(",\n    " if opened else "[\n    ")
        write(dumps_scrubbed(item))
        opened = True
    write("\n  ]" if opened else "[]")


# -------------------------------------------------------------------------- progress


@contextmanager
def progress(total: int, label: str) -> Iterator[Any]:
    """A handler for runner events: a progress bar on a terminal, plain lines otherwise."""
    console = _terminal_stderr() if total > 1 else None
    if console is not None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        bar = Progress(
            TextColumn("{task.description}", style="bold", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[last]}", markup=False),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        task = bar.add_task(label, total=total, last="")
        with bar:

            def on_event(event: Event) -> None:
                if isinstance(event, DeviceFinished):
                    r = event.result
                    last = visible(scrub(f"{r.device} {r.outcome.value}"))
                    bar.update(task, advance=1, last=last)

            yield on_event
    else:
        width = len(str(total))

        def on_event(event: Event) -> None:
            if isinstance(event, DeviceFinished):
                r = event.result
                line = f"[{event.done:>{width}}/{total}] {r.device} {r.outcome.value}"
                if r.error:
                    line += f": {r.error.message}"
                # not a terminal: a plain line, written as is (rich's layout per line cost
                # a twentieth of a large run's CPU and adds nothing to a log)
                sys.stderr.write(visible(scrub(line)) + "\n")

        yield on_event


# ----------------------------------------------------------------------------- runs


def _outcome(outcome: Outcome) -> Text:
    from rich.text import Text

    return Text(outcome.value, style=OUTCOME_STYLE[outcome])


def _changes(result: DeviceResult, dry_run: bool) -> Text | str:
    if not result.changes:
        # why (e.g. "not due: ...") is in the reason column
        return "nothing to do" if result.outcome is Outcome.OK else ""
    verb = "would " if dry_run else ""
    lines = []
    for change in result.changes:
        action = change.action.split(".")[-1]
        mark = "" if change.applied or dry_run else " (not done)"
        lines.append(f"{verb}{action} {change.detail or change.target}{mark}")
    return text("\n".join(lines))


def _release(result: DeviceResult) -> Text:
    """The device's RoomOS version as this run read it (device text: never markup)."""
    fw = result.firmware or {}
    return line(fw.get("version") or fw.get("reported") or "")


def _product(result: DeviceResult) -> Text:
    fw = result.firmware or {}
    return line(fw.get("product") or "")


def run_table(run: RunResult, *, title: str | None = None) -> None:
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_lines=False)
    table.add_column("device", no_wrap=True)
    table.add_column("via")
    table.add_column("outcome")
    table.add_column("RoomOS", no_wrap=True)
    table.add_column("changes" if not run.dry_run else "plan (dry run)")
    table.add_column("error / reason", overflow="fold")
    for result in run.devices:
        err = ""
        if result.error:
            err = result.error.message
            if result.error.xpath and result.error.xpath not in err:
                err += f" [{result.error.xpath}]"
        reason: Text | str = text(err, style="red") if err else ""
        if not err and result.message:  # why it was skipped, or a warning
            reason = text(result.message,
                          style="yellow" if result.outcome is Outcome.SKIPPED else "")
        table.add_row(
            line(result.device),
            result.transport,
            _outcome(result.outcome),
            _release(result),
            _changes(result, run.dry_run),
            reason,
        )
    stdout().print(table)
    summary(run)


def summary(run: RunResult) -> None:
    from rich.text import Text

    counts = run.counts()
    parts = [
        Text(f"{counts[o.value]} {o.value}", style=OUTCOME_STYLE[o])
        for o in Outcome
        if counts[o.value]
    ]
    line = text(f"{run.verb or run.command}: ")
    for index, part in enumerate(parts):
        if index:
            line.append(", ")
        line.append(part)
    if run.dry_run:
        line.append("  (dry run: nothing was written)", style="dim")
    line.append(f"  run {run.run_id}", style="dim")
    stdout().print(line)
    for note_text in run.notes:
        stdout().print(text(note_text, style="yellow"), soft_wrap=True)


def run_json(run: RunResult) -> None:
    emit_json(run_document(run))


# --------------------------------------------------------------------------- status


def _days(days: float | None) -> Text:
    from rich.text import Text

    if days is None:
        return Text("?")
    style = "red" if days < 14 else "yellow" if days < 45 else "green"
    return Text(f"{days:.0f}", style=style)


def status_table(run: RunResult, expiring: Sequence[Expiring] | None = None) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(title="certificates per device", title_justify="left")
    for name in ("device", "RoomOS", "product", "kind", "used for", "subject", "issuer",
                 "not after", "days left"):
        table.add_column(name, overflow="fold", no_wrap=name in ("device", "days left"))
    for result in run.devices:
        if result.error:
            continue
        if not result.facts.get("certificates") and not result.facts.get("cas"):
            table.add_row(result.device, _release(result), _product(result), "-", "", "", "",
                          "", "")
        for kind, key in (("service", "certificates"), ("ca", "cas")):
            for cert in result.facts.get(key, []):
                not_after = (cert.get("not_after") or "?")[:10]
                default = "-" if kind == "service" else "trust"
                used = ", ".join(cert.get("purposes", [])) or default
                if cert.get("renewal_profile"):
                    used += " (device renews)" if cert.get("device_renews") else " (profile)"
                table.add_row(  # device text: never read as markup
                    line(result.device), _release(result), _product(result), kind, text(used),
                    text(cert["subject"]), text(cert["issuer"]), not_after,
                    _days(cert.get("days_left")),
                )
    stdout().print(table)
    failed = [r for r in run.devices if r.error]
    if failed:
        run_table_failures(failed)
    if expiring is not None:
        if expiring:
            stdout().print(
                Text(f"{len(expiring)} certificate(s) expire within the limit:", style="bold red")
            )
            for item in expiring:
                what = ", ".join(item.purposes) or item.kind
                stdout().print(
                    line(f"  {item.device}: {item.subject} ({what}) — {item.days_left:.0f} days")
                )
        else:
            stdout().print(Text("no certificate expires within the limit", style="green"))
    summary(run)


def run_table_failures(failed: Sequence[DeviceResult]) -> None:
    from rich.table import Table

    table = Table(title="devices that could not be read", title_justify="left")
    table.add_column("device", no_wrap=True)
    table.add_column("outcome")
    table.add_column("error", overflow="fold")
    for result in failed:
        assert result.error
        table.add_row(line(result.device), _outcome(result.outcome), result.error.message)
    stdout().print(table)


# ------------------------------------------------------------------------ inventory


def device_table(devices: Sequence[Device],
                 known: Mapping[str, KnownFirmware] | None = None) -> None:
    """The devices, with the RoomOS release and product last read from each (``known``)."""
    from rich.table import Table
    from rich.text import Text

    known = known or {}
    table = Table(title=f"{len(devices)} device(s)", title_justify="left")
    for name in ("device", "address", "transport", "groups", "tags", "verify", "RoomOS",
                 "product"):
        table.add_column(name, overflow="fold")
    for d in devices:
        address = f"{d.host}:{d.port}" if d.host else (d.device_id or "")
        verify = str(d.verify)
        record = known.get(d.name)
        table.add_row(
            line(d.name),
            address,
            d.transport,
            ", ".join(d.groups),
            ", ".join(d.tags),
            Text(verify, style="bold red") if verify == "insecure" else verify,
            line(record.version or "?") if record else Text("?", style="dim"),
            line(record.product or "?") if record else Text("?", style="dim"),
        )
    stdout().print(table)
    if devices and not any(d.name in known for d in devices):
        note("RoomOS release and product: not read yet; `certfleet status` records them")


def _known_document(record: KnownFirmware | None) -> dict[str, Any] | None:
    if record is None:
        return None
    return {"version": record.version, "product": record.product, "platform": record.platform,
            "run_id": record.run_id, "read": record.updated}


def device_documents(inventory: Inventory, devices: Sequence[Device],
                     known: Mapping[str, KnownFirmware] | None = None) -> dict[str, Any]:
    return {
        "schema": "certfleet/inventory/v1",
        "inventory": str(inventory.path),
        "devices": [
            {
                "name": d.name,
                "host": d.host,
                "port": d.port,
                "transport": d.transport,
                "device_id": d.device_id,
                "groups": list(d.groups),
                "tags": list(d.tags),
                "verify": str(d.verify),
                "username": d.username,
                "password": str(d.password) if d.password else None,  # the reference, not a secret
                "source": d.source,
                # the release and product last read from the device (None: never read)
                "firmware": _known_document((known or {}).get(d.name)),
            }
            for d in devices
        ],
        "warnings": list(inventory.warnings),
    }
