"""cli.machine_output — output for machines: NDJSON events as the run goes, and JUnit XML.

Neither depends on rich. NDJSON lines are versioned (``certfleet/event/v1``) and flushed one by
one, so a CI log or a pipe sees each device as it finishes.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from certfleet.fleet.results import Outcome, RunResult, run_document
from certfleet.fleet.runner import DeviceFinished, DeviceStarted, Event

from .safe_text import scrub_data, xml_text

EVENT_SCHEMA = "certfleet/event/v1"


def ndjson_line(event: str, **data: Any) -> None:
    """One event, one line; its values scrubbed before they are serialised (so a secret is
    never missed in an escaped form); JSON escapes every newline, so a line is an event."""
    line = json.dumps(scrub_data({"schema": EVENT_SCHEMA, "event": event, **data}))
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def ndjson_handler(event: Event) -> None:
    if isinstance(event, DeviceStarted):
        ndjson_line("device-started", device=event.device, index=event.index, total=event.total)
    elif isinstance(event, DeviceFinished):
        ndjson_line("device-finished", done=event.done, total=event.total,
                    result=event.result.to_dict())


def ndjson_finish(run: RunResult) -> None:
    document = run_document(run)
    document.pop("devices")
    ndjson_line("run-finished", **{k: v for k, v in document.items() if k != "schema"})


def write_junit(run: RunResult, path: Path) -> None:
    """One test case per device, and one per step of each device's change; failures carry the
    device's reason; skipped devices are skipped cases. Every text is scrubbed and made
    visible (:func:`cli.safe_text.xml_text`): the file is valid XML 1.0 whatever a device
    said, and a CI page showing it is not steered by control characters."""
    suite = ET.Element("testsuite", name=xml_text(f"certfleet {run.verb}"),
                       timestamp=run.started.isoformat())
    tests = failures = skipped = 0
    for result in run.devices:
        cases = [(result.device, None)] + [
            (f"{result.device} / {change.action} {change.detail or change.target}", change)
            for change in result.changes
        ]
        for name, change in cases:
            tests += 1
            case = ET.SubElement(suite, "testcase", classname=xml_text(f"certfleet.{run.verb}"),
                                 name=xml_text(name),
                                 time=f"{result.duration_ms / 1000:.3f}" if change is None else "0")
            if result.failed:
                if change is None or not change.applied:
                    failures += 1
                    error = result.error
                    message = error.message if error else result.outcome.value
                    failure = ET.SubElement(case, "failure", message=xml_text(message),
                                            type=xml_text(error.kind if error
                                                          else result.outcome.value))
                    failure.text = xml_text(
                        f"{result.device}: {result.outcome.value}: {message}"
                        + (f" [{error.xpath}]" if error and error.xpath else "")
                    )
            elif result.outcome is Outcome.SKIPPED or (change is not None and run.dry_run):
                skipped += 1
                ET.SubElement(case, "skipped",
                              message=xml_text(result.message or ("dry run" if run.dry_run
                                                                   else "skipped")))
            if change is None and result.message:
                ET.SubElement(case, "system-out").text = xml_text(result.message)
    suite.set("tests", str(tests))
    suite.set("failures", str(failures))
    suite.set("skipped", str(skipped))
    suite.set("errors", "0")
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
