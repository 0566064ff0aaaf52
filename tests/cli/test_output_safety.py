"""Every renderer, fed device-provided text full of control characters, bidi overrides and
rich markup: terminals get visible escapes, JUnit stays valid XML 1.0, the HTML report and
Prometheus labels hold no raw control character, and JSON keeps the data exact (and valid)."""

from __future__ import annotations

import datetime as dt
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from certfleet.cli import render
from certfleet.cli.machine_output import ndjson_finish, ndjson_handler, write_junit
from certfleet.cli.render_prometheus import prometheus_text
from certfleet.cli.report_html import build_report
from certfleet.cli.safe_text import visible, xml_text
from certfleet.fleet.plans.status import Expiring
from certfleet.fleet.results import Change, DeviceResult, ErrorInfo, Outcome, RunResult
from certfleet.fleet.runner import DeviceFinished
from certfleet.fleet.xapi.transport import Exchange

#: ESC, OSC-8 hyperlink, BEL, NUL, CR, backspace, DEL, C1 CSI/OSC, bidi override, ZW space,
#: line separator, a non-character
HOSTILE = ("\x1b[31mred\x1b[0m \x1b]8;;https://127.0.0.1/\x07click\x1b]8;;\x07 \x07\x00 "
           "over\rwrite\x08 del\x7f \x9b31m \x9d8;; \u202eevil\u202c zw\u200b ls\u2028 "
           "nc\ufffe [/] [bold]x[/bold]")
NAME = "room\x1b[2J\u202e-1\n\rfake-ok"

#: what must never reach a terminal, a report or an XML file raw
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2028\u2029"
                 "\u2066-\u2069\ufeff\ufffe\uffff]")


def _run() -> RunResult:
    now = dt.datetime.now(dt.UTC)
    cert = {"subject": f"/CN={HOSTILE}", "issuer": f"/O={HOSTILE}", "fingerprint": "ab" * 20,
            "not_after": (now + dt.timedelta(days=10)).isoformat(), "days_left": 10.0,
            "purposes": ["HTTPS", HOSTILE]}
    good = DeviceResult(device=NAME, host="127.0.0.1", transport="local",
                        outcome=Outcome.CHANGED, facts={"certificates": [cert], "cas": [cert]},
                        changes=[Change("ca.add", "cd" * 20, HOSTILE, applied=True)],
                        message=HOSTILE)
    bad = DeviceResult(device=f"bad-{NAME}", host="127.0.0.1", transport="local",
                       outcome=Outcome.FAILED,
                       changes=[Change("ca.add", "ef" * 20, HOSTILE)],
                       calls=[Exchange(kind="command", path="Security/CA/Add", ok=False,
                                       error=HOSTILE)],
                       error=ErrorInfo(kind="command", message=HOSTILE, xpath=HOSTILE,
                                       reason=HOSTILE))
    skipped = DeviceResult(device=f"skip-{NAME}", host=None, transport="cloud",
                           outcome=Outcome.SKIPPED, message=HOSTILE)
    return RunResult(run_id="r1", command=f"certfleet status {HOSTILE}", started=now,
                     finished=now, verb="status", devices=[good, bad, skipped],
                     notes=[HOSTILE])


def _captured(capsys: pytest.CaptureFixture[str], show: Callable[[], None]) -> str:
    show()
    out, err = capsys.readouterr()
    return out + err


def test_visible_escapes_what_steers_a_terminal() -> None:
    assert visible("a\x1b[31mb\x07\x00\r\u202e\x9b") == "a\\x1b[31mb\\x07\\x00\\x0d\\u202e\\x9b"
    assert visible("two\nlines") == "two\\x0alines"
    assert visible("two\nlines", newlines=True) == "two\nlines"
    assert visible("plain [bold] ünïcödé ✓") == "plain [bold] ünïcödé ✓"
    assert not RAW.search(visible(HOSTILE))
    assert not RAW.search(xml_text(HOSTILE).replace("\n", ""))


@pytest.mark.parametrize("table", ["run_table", "status_table", "summary", "failures",
                                   "progress", "notes"])
def test_terminal_output_shows_control_characters_as_escapes(
    capsys: pytest.CaptureFixture[str], table: str
) -> None:
    run = _run()
    expiring = [Expiring(NAME, "service", "ab" * 20, HOSTILE, (HOSTILE,), 10.0)]
    shows: dict[str, Callable[[], None]] = {
        "run_table": lambda: render.run_table(run, title=HOSTILE),
        "status_table": lambda: render.status_table(run, expiring),
        "summary": lambda: render.summary(run),
        "failures": lambda: render.run_table_failures(run.devices[1:2]),
        "notes": lambda: (render.error(HOSTILE), render.warning(HOSTILE), render.note(HOSTILE)),
    }

    def progress() -> None:
        with render.progress(3, HOSTILE) as on_event:
            for done, result in enumerate(run.devices, start=1):
                on_event(DeviceFinished(result=result, done=done, total=3))

    shows["progress"] = progress
    text = _captured(capsys, shows[table])
    assert text.strip()
    assert not RAW.search(text), repr(RAW.search(text))
    if table in ("run_table", "failures", "notes", "progress"):
        assert "\\x1b[31mred" in text  # shown, as an escape
    if table in ("run_table", "status_table", "failures", "progress"):
        assert "-1\\x0a\\x0dfake-ok" in text  # a name is shown on one line, whole
    if table == "progress":
        assert "fake-ok" in text and "\\x0a" in text  # a name's newline does not start a line


def test_junit_is_valid_xml_whatever_the_devices_said(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    write_junit(_run(), path)
    data = path.read_bytes()
    root = ET.fromstring(data)  # parses: valid XML 1.0
    assert not RAW.search(data.decode("utf-8").replace("\n", "").replace("&#10;", ""))
    texts = [e.text or "" for e in root.iter()] + [v for e in root.iter() for v in e.attrib.values()]
    assert any("\\x1b[31mred" in t for t in texts)
    assert all(not RAW.search(t.replace("\n", "")) for t in texts)


def test_prometheus_labels_hold_no_control_character() -> None:
    text = prometheus_text(_run())
    for line in text.splitlines():
        assert not RAW.search(line), line
        if line and not line.startswith("#"):
            float(line.rsplit(" ", 1)[1])
    assert "\\\\x1b[31mred" in text  # the escape, itself escaped as a label value


def test_html_report_holds_no_control_character() -> None:
    page = build_report(_run(), None, [], title=HOSTILE, generated=dt.datetime.now(dt.UTC))
    assert not RAW.search(page), repr(RAW.search(page))
    assert "\\x1b[31mred" in page


def test_json_keeps_the_data_exact_and_valid(capsys: pytest.CaptureFixture[str]) -> None:
    run = _run()
    render.run_json(run)
    document = json.loads(capsys.readouterr().out)
    assert document["devices"][1]["error"]["message"] == HOSTILE
    assert document["devices"][0]["device"] == NAME
    ndjson_handler(DeviceFinished(result=run.devices[1], done=1, total=3))
    ndjson_finish(run)
    lines = capsys.readouterr().out.splitlines()
    events: list[dict[str, Any]] = [json.loads(line) for line in lines]
    assert len(events) == 2  # one event a line: no raw newline inside one
    assert events[0]["result"]["error"]["message"] == HOSTILE
    assert events[1]["notes"] == [HOSTILE]



def test_structured_redaction_finds_a_secret_before_json_escapes_it(
    capsys: pytest.CaptureFixture[str]
) -> None:
    from certfleet.cli.safe_text import scrub_data
    from certfleet.fleet.secrets import MASK, register_secret

    secret = 'tök"en\\9931\n'
    register_secret(secret)
    quoted = f"Illegal header value {('Bearer ' + secret).encode()!r}"  # ...\n' as text
    document = {"calls": [{"error": quoted}], secret.strip(): [secret], "n": 1,
                "url": "scep://scep-user:hunter2pass@127.0.0.1/cgi-bin/pkiclient.exe"}
    clean = scrub_data(document)
    assert clean["calls"][0]["error"] == f"Illegal header value b'Bearer {MASK}'"
    assert clean[MASK] == [MASK] and clean["n"] == 1
    assert clean["url"] == f"scep://{MASK}@127.0.0.1/cgi-bin/pkiclient.exe"
    assert scrub_data({"a": ["plain"]}) == {"a": ["plain"]}
    render.emit_json({"schema": "x", "devices": iter([document])})
    out = capsys.readouterr().out
    json.loads(out)
    assert "9931" not in out and "hunter2pass" not in out
