"""cli.render_prometheus — ``status -o prometheus``: node_exporter textfile-collector format.

One gauge sample per device x certificate x purpose (CAs with ``purpose="trust"``), plus
whether each device could be read and its RoomOS release and product
(``certfleet_device_info``). Write it to a file atomically for the collector::

    certfleet status -o prometheus > DIR/certfleet.prom.$$ && mv DIR/certfleet.prom.$$ \
        DIR/certfleet.prom
"""

from __future__ import annotations

import datetime as dt
import sys

from certfleet.fleet.results import RunResult

from .safe_text import scrub, visible


def _label(value: str) -> str:
    """A label value: secrets masked, control characters as visible escapes (a label is one
    line of a file other tools parse), then escaped as the text format asks."""
    value = visible(scrub(value))
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_label(v)}"' for k, v in labels.items()) + "}"


def prometheus_text(run: RunResult) -> str:
    lines = [
        "# HELP certfleet_certificate_not_after_seconds When the certificate expires (Unix time).",
        "# TYPE certfleet_certificate_not_after_seconds gauge",
    ]
    days: list[str] = [
        "# HELP certfleet_certificate_days_left Days until the certificate expires.",
        "# TYPE certfleet_certificate_days_left gauge",
    ]
    for result in run.devices:
        for kind, key in (("service", "certificates"), ("ca", "cas")):
            for cert in result.facts.get(key, []):
                if not cert.get("not_after"):
                    continue
                not_after = dt.datetime.fromisoformat(cert["not_after"]).timestamp()
                purposes = cert.get("purposes") or (["trust"] if kind == "ca" else ["none"])
                for purpose in purposes:
                    labels = _labels(device=result.device, kind=kind, purpose=purpose,
                                     fingerprint=cert["fingerprint"], subject=cert["subject"])
                    lines.append(f"certfleet_certificate_not_after_seconds{labels} {not_after:.0f}")
                    days.append(f"certfleet_certificate_days_left{labels} "
                                f"{cert.get('days_left', 0):.1f}")
    up = [
        "# HELP certfleet_device_up Whether certfleet could read the device (1) or not (0).",
        "# TYPE certfleet_device_up gauge",
    ]
    for result in run.devices:
        up.append(f"certfleet_device_up{_labels(device=result.device)} "
                  f"{0 if result.failed else 1}")
    info = [
        "# HELP certfleet_device_info The RoomOS release and product certfleet read (always 1).",
        "# TYPE certfleet_device_info gauge",
    ]
    for result in run.devices:
        if result.firmware:
            fw = result.firmware
            info.append("certfleet_device_info" + _labels(
                device=result.device, roomos=str(fw.get("version") or fw.get("reported") or ""),
                product=str(fw.get("product") or "")) + " 1")
    stamp = [
        "# HELP certfleet_status_timestamp_seconds When this status was read (Unix time).",
        "# TYPE certfleet_status_timestamp_seconds gauge",
        f"certfleet_status_timestamp_seconds {run.started.timestamp():.0f}",
    ]
    return "\n".join(lines + days + up + info + stamp) + "\n"


def emit_prometheus(run: RunResult) -> None:
    sys.stdout.write(prometheus_text(run))
    sys.stdout.flush()
