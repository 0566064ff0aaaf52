"""cli.report_html — the fleet report as one self-contained HTML page.

:func:`build_report` is a pure function: from a ``status`` run (what every device holds), the
journal's record of the last other run and the generation time, one HTML string. The page
fetches nothing: the CSS is inline, the expiry chart is an inline SVG drawn here, there is no
JavaScript, and a Content-Security-Policy of ``default-src 'none'`` stops a browser from
loading anything even if a text tried. Every text is scrubbed (secrets masked), its control
characters made visible escapes (:mod:`cli.safe_text`), and then HTML-escaped on its way in.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from certfleet.fleet.journal import RunRecord
from certfleet.fleet.plans.status import expiring_certificates
from certfleet.fleet.results import DeviceResult, Outcome, RunResult

from .safe_text import scrub, visible

__all__ = [
    "AMBER_DAYS",
    "CHART_WEEKS",
    "EXPIRING_DAYS",
    "RED_DAYS",
    "CertRow",
    "build_report",
    "certificate_rows",
    "expiry_weeks",
]

CHART_WEEKS = 52
EXPIRING_DAYS = 30  # the summary's "expiring within"
RED_DAYS = 14  # days left below this: red
AMBER_DAYS = 45  # days left below this: amber

_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
        "form-action 'none'")


def _e(value: object) -> str:
    """A text for the page: secrets masked, control characters as visible escapes, then
    escaped for element content and attributes."""
    return html.escape(visible(scrub(str(value)), newlines=True), quote=True)


@dataclass(frozen=True)
class CertRow:
    """One certificate on one device, as the table and the chart use it."""

    device: str
    kind: str  # "service" | "ca"
    purposes: tuple[str, ...]
    subject: str
    issuer: str
    not_after: dt.datetime | None
    days_left: float | None
    renewal: str  # "", "profile" or "device renews"

    @property
    def counts(self) -> bool:
        """Whether its expiry matters: a service certificate in use, or any CA."""
        return self.kind == "ca" or bool(self.purposes)


def _parse_time(text: Any) -> dt.datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def certificate_rows(result: DeviceResult) -> list[CertRow]:
    """The certificates a device listed (``status`` facts): service ones first, then CAs."""
    rows: list[CertRow] = []
    for kind, key in (("service", "certificates"), ("ca", "cas")):
        for cert in result.facts.get(key, []):
            renewal = ""
            if cert.get("renewal_profile"):
                renewal = "device renews" if cert.get("device_renews") else "profile"
            days = cert.get("days_left")
            rows.append(
                CertRow(
                    device=result.device,
                    kind=kind,
                    purposes=tuple(str(p) for p in cert.get("purposes", ())),
                    subject=str(cert.get("subject", "")),
                    issuer=str(cert.get("issuer", "")),
                    not_after=_parse_time(cert.get("not_after")),
                    days_left=float(days) if isinstance(days, (int, float)) else None,
                    renewal=renewal,
                )
            )
    return rows


def expiry_weeks(
    rows: Iterable[CertRow], generated: dt.datetime, weeks: int = CHART_WEEKS
) -> list[tuple[dt.date, int]]:
    """Per week from the generation date (UTC), how many certificates that matter (in use, or
    CAs) expire in it: ``weeks`` entries ``(first day, count)``. Week ``i`` holds the expiries
    on the days ``start + 7i`` to ``start + 7i + 6``; those already past are not counted."""
    start = generated.astimezone(dt.UTC).date()
    counts = [0] * weeks
    for row in rows:
        if not row.counts or row.not_after is None or row.not_after < generated:
            continue
        index = (row.not_after.astimezone(dt.UTC).date() - start).days // 7
        if 0 <= index < weeks:
            counts[index] += 1
    return [(start + dt.timedelta(days=7 * i), counts[i]) for i in range(weeks)]


def _tone(days: float | None) -> str:
    if days is None:
        return "unknown"
    return "red" if days < RED_DAYS else "amber" if days < AMBER_DAYS else "ok"


# ------------------------------------------------------------------------------- chart

_W, _H = 960, 330
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 16, 24, 74


def _tick_step(top: int) -> int:
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            step = factor * magnitude
            if top <= step * 5:
                return step
        magnitude *= 10


def _chart(weeks: Sequence[tuple[dt.date, int]]) -> str:
    plot_w = _W - _LEFT - _RIGHT
    plot_h = _H - _TOP - _BOTTOM
    base = _TOP + plot_h
    peak = max((count for _, count in weeks), default=0)
    step = _tick_step(max(peak, 1))
    top = max(step, math.ceil(max(peak, 1) / step) * step)
    slot = plot_w / max(len(weeks), 1)
    bar_w = slot * 0.78

    parts = [
        f'<svg id="expiry-chart" viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}" '
        'role="img" aria-labelledby="expiry-chart-title expiry-chart-desc">',
        '<title id="expiry-chart-title">Certificates expiring per week</title>',
        f'<desc id="expiry-chart-desc">{len(weeks)} weeks from {_e(weeks[0][0].isoformat())}'
        f', {sum(c for _, c in weeks)} certificates in use or CAs expiring</desc>'
        if weeks else '<desc id="expiry-chart-desc">no weeks</desc>',
        '<g class="grid">',
    ]
    for value in range(0, top + 1, step):
        y = base - plot_h * value / top
        parts.append(
            f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="tick" x="{_LEFT - 8}" y="{y + 4:.1f}" text-anchor="end">{value}</text>'
        )
    parts.append("</g>")
    parts.append('<g class="bars">')
    for index, (week, count) in enumerate(weeks):
        x = _LEFT + slot * index + (slot - bar_w) / 2
        height = plot_h * count / top
        tone = _tone(7 * index)
        label = f"week of {week.isoformat()}: {count} certificate{'s' if count != 1 else ''}"
        parts.append(
            f'<rect class="bar {tone}" x="{x:.1f}" y="{base - height:.1f}" '
            f'width="{bar_w:.1f}" height="{height:.1f}" data-week="{week.isoformat()}" '
            f'data-count="{count}"><title>{_e(label)}</title></rect>'
        )
        if count:
            parts.append(
                f'<text class="count" x="{x + bar_w / 2:.1f}" y="{base - height - 4:.1f}" '
                f'text-anchor="middle">{count}</text>'
            )
    parts.append("</g>")
    parts.append(
        f'<line class="axis" x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{base}" y2="{base}"/>'
        f'<line class="axis" x1="{_LEFT}" x2="{_LEFT}" y1="{_TOP}" y2="{base}"/>'
    )
    parts.append('<g class="x-labels">')
    last_year: int | None = None
    for index, (week, _) in enumerate(weeks):
        if index % 4:
            continue
        x = _LEFT + slot * index + slot / 2
        parts.append(
            f'<line class="tick-mark" x1="{x:.1f}" x2="{x:.1f}" y1="{base}" y2="{base + 5}"/>'
        )
        year = f'<tspan x="{x:.1f}" dy="14">{week.year}</tspan>' if week.year != last_year \
            else ""
        last_year = week.year
        parts.append(
            f'<text class="tick" x="{x:.1f}" y="{base + 18}" text-anchor="middle">'
            f'{week.day} {week:%b}{year}</text>'
        )
    parts.append("</g>")
    parts.append(
        f'<text class="axis-title" x="{_LEFT + plot_w / 2:.1f}" y="{_H - 8}" '
        'text-anchor="middle">week starting (UTC)</text>'
        f'<text class="axis-title" transform="translate(16 {_TOP + plot_h / 2:.1f}) rotate(-90)"'
        ' text-anchor="middle">certificates expiring</text>'
    )
    parts.append("</svg>")
    return "\n".join(parts)


# -------------------------------------------------------------------------------- page

_STYLE = """
:root { color-scheme: light; --red: #c62828; --amber: #b26a00; --ok: #2e7d32; --ink: #1f2328;
  --muted: #59636e; --line: #d1d9e0; --bar: #3b6fb6; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px 32px 48px; color: var(--ink); background: #fff;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 32px 0 8px; padding-bottom: 4px; border-bottom: 1px solid
  var(--line); }
.meta { color: var(--muted); margin: 0 0 16px; }
code { font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 0; padding: 0; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 10px 16px; min-width: 150px; }
.card dt { color: var(--muted); font-size: 12px; }
.card dd { margin: 2px 0 0; font-size: 22px; font-weight: 600; }
.card.bad dd { color: var(--red); }
.card.warn dd { color: var(--amber); }
table { border-collapse: collapse; width: 100%; margin: 8px 0; }
table.facts { width: auto; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; white-space: nowrap; }
td.name, td.num, td.date { white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.subject, td.issuer, td.error { word-break: break-word; }
tr.unused td { color: var(--muted); }
td.days.red { color: #fff; background: var(--red); font-weight: 600; }
td.days.amber { color: #000; background: #ffcc80; font-weight: 600; }
td.days.ok { color: var(--ok); }
.outcome.failed, .outcome.unreachable { color: var(--red); font-weight: 600; }
.outcome.changed { color: var(--amber); }
.outcome.ok { color: var(--ok); }
.outcome.skipped { color: var(--muted); }
.none { color: var(--muted); font-style: italic; }
figure { margin: 8px 0; }
figcaption { color: var(--muted); }
#expiry-chart { width: 100%; max-width: 1200px; height: auto; font-size: 11px; }
#expiry-chart .grid line { stroke: #e6eaef; }
#expiry-chart .axis, #expiry-chart .tick-mark { stroke: var(--muted); }
#expiry-chart .tick, #expiry-chart .axis-title { fill: var(--muted); }
#expiry-chart .count { fill: var(--ink); font-size: 10px; }
#expiry-chart .bar { fill: var(--bar); }
#expiry-chart .bar.red { fill: var(--red); }
#expiry-chart .bar.amber { fill: #f0a030; }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; }
"""


def _when(text: str | None) -> str:
    """A journal timestamp (ISO 8601) for people: to the second."""
    if not text:
        return "—"
    when = _parse_time(text)
    if when is None:
        return text
    return when.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _card(label: str, value: int, tone: str = "") -> str:
    cls = f"card {tone}".strip()
    return f'<div class="{cls}"><dt>{_e(label)}</dt><dd>{value}</dd></div>'


def _summary(run: RunResult, rows: Sequence[CertRow], generated: dt.datetime) -> str:
    read = [r for r in run.devices if r.outcome in (Outcome.OK, Outcome.CHANGED)]
    failed = [r for r in run.devices if r.failed]
    skipped = [r for r in run.devices if r.outcome is Outcome.SKIPPED]
    in_use = sum(1 for r in rows if r.kind == "service" and r.purposes)
    cas = sum(1 for r in rows if r.kind == "ca")
    expiring = len(expiring_certificates(run, dt.timedelta(days=EXPIRING_DAYS), generated))
    cards = [
        _card("devices read", len(read)),
        _card("devices unreachable or failed", len(failed), "bad" if failed else ""),
    ]
    if skipped:
        cards.append(_card("devices not read (skipped)", len(skipped), "warn"))
    cards += [
        _card("certificates in use", in_use),
        _card("CAs on trust lists", cas),
        _card(f"expiring within {EXPIRING_DAYS} days (in use + CAs)", expiring,
              "bad" if expiring else ""),
    ]
    return '<section id="summary"><h2>Fleet summary</h2><dl class="cards">' + "".join(cards) + \
        "</dl></section>"


def _cert_table(run: RunResult, rows: Sequence[CertRow]) -> str:
    by_device: dict[str, list[CertRow]] = {}
    for row in rows:
        by_device.setdefault(row.device, []).append(row)
    head = "".join(f"<th>{_e(name)}</th>" for name in (
        "device", "kind", "used for", "subject", "issuer", "not after", "days left"))
    body: list[str] = []
    for result in run.devices:
        if result.outcome not in (Outcome.OK, Outcome.CHANGED):
            continue
        device = _e(result.device)
        certs = by_device.get(result.device, [])
        if not certs:
            body.append(f'<tr data-device="{device}" class="empty"><td class="name">{device}'
                        '</td><td colspan="6" class="none">no certificates listed</td></tr>')
        for cert in certs:
            used = ", ".join(cert.purposes) or ("trust" if cert.kind == "ca" else "—")
            if cert.renewal:
                used += f" ({cert.renewal})"
            unused = ' class="unused"' if cert.kind == "service" and not cert.purposes else ""
            tone = _tone(cert.days_left)
            days = "?" if cert.days_left is None else f"{cert.days_left:.0f}"
            not_after = cert.not_after.astimezone(dt.UTC).strftime("%Y-%m-%d") \
                if cert.not_after else "?"
            body.append(
                f'<tr data-device="{device}" data-kind="{_e(cert.kind)}"{unused}>'
                f'<td class="name">{device}</td><td>{_e(cert.kind)}</td><td>{_e(used)}</td>'
                f'<td class="subject">{_e(cert.subject)}</td>'
                f'<td class="issuer">{_e(cert.issuer)}</td>'
                f'<td class="date">{_e(not_after)}</td>'
                f'<td class="num days {tone}">{_e(days)}</td></tr>'
            )
    if not body:
        body.append('<tr><td colspan="7" class="none">no device could be read</td></tr>')
    return (
        '<section id="certificates"><h2>Certificates</h2>'
        f'<p class="meta">Days left: under {RED_DAYS} red, under {AMBER_DAYS} amber. '
        "Service certificates not in use are greyed out; they do not count as expiring.</p>"
        f'<table id="certificate-table"><thead><tr>{head}</tr></thead><tbody>'
        + "\n".join(body) + "</tbody></table></section>"
    )


def _unreadable(run: RunResult) -> str:
    missing = [r for r in run.devices if r.outcome not in (Outcome.OK, Outcome.CHANGED)]
    if not missing:
        return ""
    body = []
    for result in missing:
        kind = result.error.kind if result.error else ""
        message = result.error.message if result.error else result.message
        outcome = result.outcome.value
        body.append(
            f'<tr data-device="{_e(result.device)}"><td class="name">{_e(result.device)}</td>'
            f'<td>{_e(result.host or "")}</td>'
            f'<td class="outcome {_e(outcome)}">{_e(outcome)}</td><td>{_e(kind)}</td>'
            f'<td class="error">{_e(message)}</td></tr>'
        )
    head = "".join(f"<th>{name}</th>" for name in ("device", "host", "outcome", "error", "message"))
    return (
        '<section id="unreadable"><h2>Devices that could not be read</h2>'
        '<p class="meta">Their certificates are not in the table or the chart.</p>'
        f'<table id="unreadable-table"><thead><tr>{head}</tr></thead><tbody>'
        + "\n".join(body) + "</tbody></table></section>"
    )


def _chart_section(rows: Sequence[CertRow], generated: dt.datetime) -> str:
    weeks = expiry_weeks(rows, generated)
    counted = [r for r in rows if r.counts and r.not_after is not None]
    expired = sum(1 for r in counted if r.not_after is not None and r.not_after < generated)
    within = sum(count for _, count in weeks)
    later = len(counted) - expired - within
    caption = (
        f"Certificates in use and CAs expiring per week over the next {len(weeks)} weeks: "
        f"{within} in all; {later} later"
        + (f"; {expired} already expired (not shown)" if expired else "")
        + ". Each certificate counts once per device that holds it."
    )
    return (
        '<section id="expiry"><h2>Expiry over the next year</h2><figure>'
        + _chart(weeks)
        + f"<figcaption>{_e(caption)}</figcaption></figure></section>"
    )


def _previous(previous: RunRecord | None, devices: Sequence[Mapping[str, Any]]) -> str:
    if previous is None:
        return ('<section id="last-run"><h2>Last run</h2>'
                '<p class="none" id="no-previous-run">There is no previous run in the journal.'
                "</p></section>")
    facts = [
        ("verb", previous.verb + (" (dry run)" if previous.dry_run else "")),
        ("command", previous.command),
        ("run", previous.run_id),
        ("started", _when(previous.started)),
        ("finished", _when(previous.finished)),
        ("status", previous.status
         + (f", exit code {previous.exit_code}" if previous.exit_code is not None else "")),
    ]
    lines = "".join(
        f"<tr><th>{_e(name)}</th><td>"
        + (f"<code>{_e(value)}</code>" if name in ("command", "run") else _e(value))
        + "</td></tr>"
        for name, value in facts
    )
    body = []
    for row in sorted(devices, key=lambda r: str(r.get("device", ""))):
        outcome = str(row.get("outcome", ""))
        error = row.get("error") or ""
        kind = row.get("error_kind") or ""
        body.append(
            f'<tr data-device="{_e(row.get("device", ""))}">'
            f'<td class="name">{_e(row.get("device", ""))}</td>'
            f'<td class="outcome {_e(outcome)}">{_e(outcome)}</td>'
            f"<td>{_e(kind)}</td><td class=\"error\">{_e(error)}</td></tr>"
        )
    if not body:
        body.append('<tr><td colspan="4" class="none">no device recorded</td></tr>')
    head = "".join(f"<th>{name}</th>" for name in ("device", "outcome", "error", "message"))
    return (
        '<section id="last-run"><h2>Last run</h2>'
        f'<table class="facts" id="last-run-facts"><tbody>{lines}</tbody></table>'
        f'<table id="last-run-devices"><thead><tr>{head}</tr></thead><tbody>'
        + "\n".join(body) + "</tbody></table></section>"
    )


def build_report(
    run: RunResult,
    previous: RunRecord | None,
    previous_devices: Sequence[Mapping[str, Any]],
    *,
    title: str,
    generated: dt.datetime,
) -> str:
    """The whole page. ``run`` is a ``status`` run (its devices' facts); ``previous`` the last
    other run in the journal (or None) with its per-device rows; ``generated`` an aware time."""
    rows = [row for result in run.devices for row in certificate_rows(result)]
    stamp = generated.astimezone(dt.UTC)
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="generator" content="certfleet">',
        '<link rel="icon" href="data:,">',
        f"<title>{_e(title)}</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        f"<header><h1>{_e(title)}</h1>",
        f'<p class="meta">Generated <time id="generated" datetime="{_e(stamp.isoformat())}">'
        f'{_e(stamp.strftime("%Y-%m-%d %H:%M:%S UTC"))}</time> from {len(run.devices)} '
        f"selected device{'s' if len(run.devices) != 1 else ''}, read live "
        f"(run <code>{_e(run.run_id)}</code>).</p></header>",
        "<main>",
        _summary(run, rows, generated),
        _unreadable(run),
        _chart_section(rows, generated),
        _previous(previous, previous_devices),
        _cert_table(run, rows),  # the long one last
        "</main>",
        "<footer>Made by certfleet report. Self-contained: no scripts, nothing fetched.</footer>",
        "</body>",
        "</html>",
        "",
    ])
