"""certfleet report --html: one self-contained page, checked as text, against `status -o json`,
and rendered in headless Chromium (Debian's `chromium` package)."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import re
import shutil
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from debian_packages import missing

from certfleet.cli.report_html import CertRow, build_report, expiry_weeks
from certfleet.fleet.journal import RunRecord
from certfleet.fleet.pki.local_ca import LocalCa, create_ca
from certfleet.fleet.results import DeviceResult, ErrorInfo, Outcome, RunResult
from certfleet.fleet.secrets import MASK, register_secret

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_PACKAGE = "chromium"


# --------------------------------------------------------------------------- helpers


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    text: str = ""


class Page(HTMLParser):
    """The elements of a page, in order, with their attributes and direct text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self._open: list[Element] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.elements.append(element)
        if tag not in ("meta", "link", "br", "line", "img", "input"):
            self._open.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append(Element(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self._open) - 1, -1, -1):
            if self._open[index].tag == tag:
                del self._open[index:]
                break

    def handle_data(self, data: str) -> None:
        if self._open:
            self._open[-1].text += data

    def find(self, tag: str, cls: str | None = None, **attrs: str) -> list[Element]:
        found = []
        for e in self.elements:
            if e.tag != tag:
                continue
            if cls is not None and cls not in e.attrs.get("class", "").split():
                continue
            if all(e.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items()):
                found.append(e)
        return found

    def ids(self) -> set[str]:
        return {e.attrs["id"] for e in self.elements if "id" in e.attrs}


def parse(text: str) -> Page:
    page = Page()
    page.feed(text)
    page.close()
    return page


def external_references(text: str) -> list[str]:
    """Every src=/href= on an element (and every CSS url()) that is not a fragment or a
    data: URL."""
    refs = [value for e in parse(text).elements for name, value in e.attrs.items()
            if name in ("src", "href", "xlink:href", "srcset", "poster", "action")]
    refs += re.findall(r"url\(\s*['\"]?([^'\")]*)", text, re.IGNORECASE)
    return [r for r in refs if not r.startswith(("#", "data:"))]


def assert_self_contained(text: str, *, no_urls_at_all: bool = True) -> None:
    assert external_references(text) == []
    assert not [e.tag for e in parse(text).elements
                if e.tag in ("script", "img", "iframe", "object", "embed", "image", "use")]
    assert "@import" not in text
    if no_urls_at_all:  # not even in a text
        assert "http://" not in text and "https://" not in text


def ca_file(tmp_path: Path, name: str, days: int) -> tuple[LocalCa, Path]:
    ca = create_ca(name, organization="Example Corp", days=days)
    path = tmp_path / f"{name.replace(' ', '-').lower()}.pem"
    path.write_text(ca.cert_pem)
    return ca, path


def prepare_fleet(sim: Any, cli: Any, corp_ca: tuple[LocalCa, Path], tmp_path: Path) -> None:
    """CAs that expire inside the chart's year on every device, one on a single device, and a
    last run (push-ca to all five) for the report to show."""
    inv = str(sim.inventory_path)
    names = list(sim.devices)
    _, one = ca_file(tmp_path, "Lab One CA", 100)
    first = cli("push-ca", str(one), "-i", inv, "--limit", names[0])
    assert first.exit_code == 0, first.output
    files = [str(ca_file(tmp_path, f"Short {days} CA", days)[1]) for days in (5, 20, 60, 200)]
    second = cli("push-ca", str(corp_ca[1]), *files, "-i", inv, "-o", "json")
    assert second.exit_code == 0, second.output
    assert second.json()["summary"]["changed"] == 5


def expected_weeks(status_doc: dict[str, Any], generated: dt.datetime) -> list[int]:
    """Per week, from `status -o json` facts: in-use certificates and CAs expiring in it."""
    start = generated.astimezone(dt.UTC).date()
    counts = [0] * 52
    for device in status_doc["devices"]:
        facts = device.get("facts", {})
        for kind, key in (("service", "certificates"), ("ca", "cas")):
            for cert in facts.get(key, []):
                if kind == "service" and not cert["purposes"]:
                    continue
                not_after = dt.datetime.fromisoformat(cert["not_after"])
                if not_after < generated:
                    continue
                index = (not_after.astimezone(dt.UTC).date() - start).days // 7
                if 0 <= index < 52:
                    counts[index] += 1
    return counts


def generated_at(page: Page) -> dt.datetime:
    (stamp,) = page.find("time", id="generated")
    return dt.datetime.fromisoformat(stamp.attrs["datetime"])


# ------------------------------------------------------------------ the page builder


def _device(name: str, *, subject: str = "CN=room", days: float = 100.0,
            error: ErrorInfo | None = None) -> DeviceResult:
    now = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
    result = DeviceResult(device=name, host="127.0.0.1", transport="local",
                          outcome=Outcome.UNREACHABLE if error else Outcome.OK, error=error)
    if error is None:
        not_after = (now + dt.timedelta(days=days)).isoformat()
        result.facts = {
            "certificates": [
                {"fingerprint": "aa" * 20, "subject": subject, "issuer": "CN=Issuer & Co",
                 "not_after": not_after, "days_left": days, "purposes": ["HTTPS"]},
                {"fingerprint": "bb" * 20, "subject": "O=TemporaryDefaultCertificate",
                 "issuer": "O=TemporaryDefaultCertificate", "not_after": not_after,
                 "days_left": days, "purposes": []},
            ],
            "cas": [
                {"fingerprint": "cc" * 20, "subject": "CN=Root", "issuer": "CN=Root",
                 "not_after": (now + dt.timedelta(days=10)).isoformat(), "days_left": 10.0,
                 "purposes": []},
            ],
        }
    return result


def test_page_escapes_every_text_and_masks_secrets() -> None:
    secret = "s3cret-Passw0rd-for-the-report"
    register_secret(secret)
    hostile = '<script>alert("x")</script> & <img src=http://evil.example/x.png>'
    run = RunResult(run_id="r1", command="certfleet report", verb="status",
                    started=dt.datetime(2026, 3, 2, 12, tzinfo=dt.UTC))
    run.devices = [
        _device('room-"1"<b>', subject=hostile),
        _device("room-2", error=ErrorInfo("auth", f"login refused for {secret}")),
    ]
    previous = RunRecord("p1", f"certfleet push-ca {hostile}", "push-ca", None, {}, False,
                         "2026-03-01T10:00:00+00:00", "2026-03-01T10:00:05+00:00", "finished",
                         1, None, {})
    rows = [{"device": "room-2", "outcome": "unreachable", "error_kind": "unreachable",
             "error": f"{hostile} {secret}"}]
    text = build_report(run, previous, rows, title=f"Oslo <rooms> {secret}",
                        generated=dt.datetime(2026, 3, 2, 12, 30, tzinfo=dt.UTC))
    assert secret not in text and MASK in text
    assert "<script" not in text and "<img" not in text and "<b>" not in text
    assert "&lt;script&gt;" in text and "&amp;" in text
    assert_self_contained(text, no_urls_at_all=False)  # the hostile text holds one, as text
    page = parse(text)
    assert page.find("title")[0].text == f"Oslo <rooms> {MASK}"
    assert {e.attrs["data-device"] for e in page.elements if "data-device" in e.attrs} == {
        'room-"1"<b>', "room-2"}
    # the unused factory certificate is listed, greyed, and not counted
    assert len(page.find("tr", "unused")) == 1
    assert [e.text for e in page.find("td", "days")] == ["100", "100", "10"]
    assert [e.attrs["class"] for e in page.find("td", "days")] == [
        "num days ok", "num days ok", "num days red"]


def test_days_left_colours_and_no_previous_run() -> None:
    run = RunResult(run_id="r1", command="certfleet report", verb="status",
                    started=dt.datetime(2026, 3, 2, 12, tzinfo=dt.UTC))
    run.devices = [_device("a", days=13.6), _device("b", days=44.0), _device("c", days=45.0)]
    text = build_report(run, None, [], title="t",
                        generated=dt.datetime(2026, 3, 2, 12, 30, tzinfo=dt.UTC))
    page = parse(text)
    tones = {(e.attrs["class"].split()[-1], e.text) for e in page.find("td", "days")}
    assert ("red", "14") in tones and ("amber", "44") in tones and ("ok", "45") in tones
    assert "no-previous-run" in page.ids()
    assert "There is no previous run" in text


def test_expiry_weeks_buckets_by_utc_date_and_skips_unused_and_expired() -> None:
    generated = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)

    def row(when: dt.datetime, kind: str = "ca", purposes: tuple[str, ...] = ()) -> CertRow:
        return CertRow("d", kind, purposes, "CN=x", "CN=y", when, None, "")

    rows = [
        row(generated - dt.timedelta(hours=1)),  # already expired: not counted
        row(generated + dt.timedelta(hours=1)),  # week 0
        row(dt.datetime(2026, 3, 8, 23, 59, tzinfo=dt.UTC)),  # last day of week 0
        row(dt.datetime(2026, 3, 9, 0, 0, tzinfo=dt.UTC)),  # week 1
        row(dt.datetime(2026, 3, 9, 0, 0, tzinfo=dt.UTC), "service", ("HTTPS",)),  # in use
        row(dt.datetime(2026, 3, 9, 0, 0, tzinfo=dt.UTC), "service"),  # not in use: no
        row(dt.datetime(2027, 2, 28, 23, 0, tzinfo=dt.UTC)),  # last day of week 51
        row(dt.datetime(2027, 3, 1, 0, 0, tzinfo=dt.UTC)),  # beyond the chart
    ]
    weeks = expiry_weeks(rows, generated)
    assert len(weeks) == 52
    assert weeks[0] == (dt.date(2026, 3, 2), 2)
    assert weeks[1] == (dt.date(2026, 3, 9), 2)
    assert weeks[51] == (dt.date(2027, 2, 22), 1)
    assert sum(count for _, count in weeks) == 5


# --------------------------------------------------------------- against the simulator


def test_report_html_against_the_sim(sim: Any, cli: Any, corp_ca: tuple[LocalCa, Path],
                                     tmp_path: Path) -> None:
    prepare_fleet(sim, cli, corp_ca, tmp_path)
    inv = str(sim.inventory_path)
    out = tmp_path / "site" / "report.html"
    out.parent.mkdir()
    result = cli("report", "--html", str(out), "-i", inv, "--title", "Oslo rooms & more")
    assert result.exit_code == 0, result.output
    assert str(out) in result.stdout
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]  # no temporary left

    text = out.read_text(encoding="utf-8")
    assert_self_contained(text)
    page = parse(text)
    assert page.find("title")[0].text == "Oslo rooms & more"
    assert "Oslo rooms &amp; more" in text

    status = cli("status", "-i", inv, "-o", "json")
    assert status.exit_code == 0, status.output
    doc = status.json()

    # a row per certificate of every device, as status lists them
    cert_rows = page.find("tr")
    for entry in doc["devices"]:
        name = entry["device"]
        rows = [r for r in cert_rows if r.attrs.get("data-device") == name and "data-kind" in r.attrs]
        facts = entry["facts"]
        assert len(rows) == len(facts["certificates"]) + len(facts["cas"]), name
        assert sum(r.attrs["data-kind"] == "ca" for r in rows) == len(facts["cas"])
    # days left coloured: the 5-day CA red on every device, the 20-day one amber
    tones = [e.attrs["class"].split()[-1] for e in page.find("td", "days")]
    assert tones.count("red") == 5 and tones.count("amber") == 5

    # the chart: 52 weekly bars from the generation date, counts as status' facts give them
    svg = page.find("svg", id="expiry-chart")
    assert len(svg) == 1
    bars = page.find("rect", "bar")
    assert len(bars) == 52
    generated = generated_at(page)
    weeks = [dt.date.fromisoformat(b.attrs["data-week"]) for b in bars]
    assert weeks[0] == generated.date()
    assert all((b - a).days == 7 for a, b in itertools.pairwise(weeks))
    counts = [int(b.attrs["data-count"]) for b in bars]
    assert counts == expected_weeks(doc, generated)
    # 5-, 20-, 60- and 200-day CAs on all five devices, the 100-day one on one device
    assert sum(counts) == 4 * 5 + 1
    assert counts[0] == 5  # the 5-day CA: week 0 on every device
    assert any(e.tag == "text" and "week starting" in e.text for e in page.elements)

    # the summary: 5 read, none unreachable; expiring within 30 days = 5d + 20d CAs x 5
    cards = {e.text.strip() for e in page.find("dt")}
    assert "devices read" in cards and "certificates in use" in cards
    values = dict(zip([e.text for e in page.find("dt")], [e.text for e in page.find("dd")],
                      strict=True))
    assert values["devices read"] == "5"
    assert values["devices unreachable or failed"] == "0"
    assert values["certificates in use"] == str(sum(
        1 for d in doc["devices"] for c in d["facts"]["certificates"] if c["purposes"]))
    assert values["expiring within 30 days (in use + CAs)"] == "10"

    # the last run that is not the report's own: the push-ca to all five
    assert "last-run" in page.ids() and "no-previous-run" not in page.ids()
    assert "command" in [e.text for e in page.find("th")]
    assert "push-ca" in text
    last = [r.attrs["data-device"] for r in page.find("tr")
            if "data-device" in r.attrs and "data-kind" not in r.attrs]
    assert last == sorted(sim.devices)
    assert len(page.find("td", "changed")) == 5


def test_report_writes_the_page_when_a_device_is_down(sim: Any, cli: Any,
                                                      tmp_path: Path) -> None:
    names = list(sim.devices)
    sim.set_fault(names[2], offline=True)
    out = tmp_path / "report.html"
    result = cli("report", "--html", str(out), "-i", str(sim.inventory_path))
    assert result.exit_code == 1, result.output
    assert names[2] in result.stdout
    page = parse(out.read_text(encoding="utf-8"))
    down = [r for r in page.find("tr") if r.attrs.get("data-device") == names[2]]
    assert len(down) == 1  # in the unreadable table only
    assert "unreadable" in page.ids()
    assert page.find("td", "unreachable")
    values = dict(zip([e.text for e in page.find("dt")], [e.text for e in page.find("dd")],
                      strict=True))
    assert values["devices read"] == "4"
    assert values["devices unreachable or failed"] == "1"
    for name in names:
        if name != names[2]:
            assert any(r.attrs.get("data-device") == name for r in page.find("tr"))
    # the journal held only the report's own run
    assert "no-previous-run" in page.ids()


def test_report_target_problems_exit_2_before_any_device(cli: Any, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder" / "r.html"
    result = cli("report", "--html", str(missing), "-i", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2
    assert "does not exist" in result.stderr
    folder = cli("report", "--html", str(tmp_path), "-i", str(tmp_path / "nope.yaml"))
    assert folder.exit_code == 2 and "folder" in folder.stderr


# ------------------------------------------------------------- rendered in Chromium


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's chromium (.ci/run installs it); skipped, with the line that installs it, where
    it is missing."""
    if not CHROMIUM.exists():
        missing(f"needs Debian's {CHROMIUM_PACKAGE} ({CHROMIUM} is missing): "
                f"apt-get install -y --no-install-recommends {CHROMIUM_PACKAGE}")
    return CHROMIUM


def run_chromium(binary: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        str(binary), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--disable-dev-shm-usage", "--no-proxy-server",
        "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={profile}", *args,
    ]
    env = {**os.environ, "HOME": str(profile)}
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=False,
                          env=env)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.fixture
def rendered_report(sim: Any, cli: Any, corp_ca: tuple[LocalCa, Path],
                    tmp_path: Path) -> Iterator[Path]:
    prepare_fleet(sim, cli, corp_ca, tmp_path)
    out = tmp_path / "report.html"
    result = cli("report", "--html", str(out), "-i", str(sim.inventory_path),
                 "--title", "Fleet report <Oslo>")
    assert result.exit_code == 0, result.output
    yield out


@pytest.mark.slow
def test_report_renders_in_headless_chromium(chromium: Path, rendered_report: Path,
                                             sim: Any, tmp_path: Path) -> None:
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    dumped = run_chromium(chromium, profile, "--dump-dom", rendered_report.as_uri())
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    dom = parse(dumped.stdout)
    assert dom.find("title")[0].text == "Fleet report <Oslo>"
    assert dom.find("h1")[0].text == "Fleet report <Oslo>"
    devices = {e.attrs["data-device"] for e in dom.find("tr") if "data-kind" in e.attrs}
    assert devices == set(sim.devices)
    assert len(dom.find("svg", id="expiry-chart")) == 1
    bars = dom.find("rect", "bar")
    assert len(bars) == 52
    assert sum(int(b.attrs["data-count"]) for b in bars) == 21

    shot = tmp_path / "shot.png"
    taken = run_chromium(chromium, profile, f"--screenshot={shot}", "--window-size=1280,2000",
                         "--hide-scrollbars", rendered_report.as_uri())
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert shot.exists() and shot.stat().st_size > 20_000
    assert png_size(shot) == (1280, 2000)
    keep = os.environ.get("CERTFLEET_REPORT_SHOT")
    if keep:  # to look at it: CERTFLEET_REPORT_SHOT=/tmp/shot.png pytest -k chromium
        shutil.copyfile(shot, keep)
