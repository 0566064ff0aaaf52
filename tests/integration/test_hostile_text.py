"""Device-provided text is data in every output: rich markup in a certificate subject or a
device's reason is shown as it is, never parsed (a `[/]` used to crash the whole table), and
control characters never reach a terminal, a JUnit file or a report raw."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import yaml
from hostile_device import hostile_device

from certfleet.fleet.pki.local_ca import create_ca

WIDE = {"COLUMNS": "600"}  # tables one row a line, so a text is found whole
MARKUP_CN = "Evil [/] [bold]X[link=https://127.0.0.1/]Y[/link]"
MARKUP_REASON = "[/] no [bold red]FAKE OK[/bold red] [link=https://127.0.0.1/]click[/link] :x:"


def _hostile_inventory(tmp_path: Path, sim: Any, device: Any) -> Path:
    inv = yaml.safe_load(sim.inventory_path.read_text())
    inv["devices"]["evil-room"] = device.inventory_entry(inv["defaults"]["password"])
    path = tmp_path / "hostile.yaml"
    path.write_text(yaml.safe_dump(inv))
    return path


def test_markup_in_a_certificate_subject_is_shown_literally(sim: Any, tmp_path: Path,
                                                            cli: Any) -> None:
    ca = create_ca(MARKUP_CN, organization="Example")
    pem = tmp_path / "markup-ca.pem"
    pem.write_text(ca.cert_pem)
    inv = str(sim.inventory_path)
    pushed = cli("push-ca", str(pem), "-i", inv, env=WIDE)
    assert pushed.exit_code == 0, pushed.output
    assert MARKUP_CN in pushed.stdout  # the push-ca table: the subject as it is
    status = cli("status", "-i", inv, env=WIDE)
    assert status.exit_code == 0, status.output
    assert MARKUP_CN in status.stdout  # read back from the devices' CA lists
    shown = cli("runs", "show", "last", env=WIDE)
    assert shown.exit_code == 0, shown.output


def test_markup_in_a_device_reason_is_shown_literally(sim: Any, tmp_path: Path,
                                                      cli: Any) -> None:
    with hostile_device(tmp_path / "evil", MARKUP_REASON) as device:
        inv = str(_hostile_inventory(tmp_path, sim, device))
        status = cli("status", "-i", inv, env=WIDE)
        assert status.exit_code == 1, status.output  # one device failed, the fleet is shown
        assert MARKUP_REASON in status.stdout
        assert "room-001" in status.stdout
        ca = create_ca("Markup Test CA")
        pem = tmp_path / "ca.pem"
        pem.write_text(ca.cert_pem)
        pushed = cli("push-ca", str(pem), "-i", inv, env=WIDE)
        assert pushed.exit_code == 1, pushed.output
        assert MARKUP_REASON in pushed.stdout
        assert MARKUP_REASON in pushed.stderr  # the progress line too
    shown = cli("runs", "show", "last", env=WIDE)
    assert shown.exit_code == 0, shown.output
    assert MARKUP_REASON in shown.stdout


#: what XML 1.0 lets a device send in a Reason: C1 CSI and OSC, DEL, a bidi override, a CR
CONTROL_REASON = "\u009b2J\u009d8;;https://127.0.0.1/\u009cfake\u009d8;;\u009c del\x7f " \
                 "\u202eevil\u202c over\rwrite"
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def test_control_characters_from_a_device_never_reach_an_output_raw(
    sim: Any, tmp_path: Path, cli: Any
) -> None:
    ca = create_ca("Bidi \u202eAC lairE\u202c CA")
    pem = tmp_path / "ca.pem"
    pem.write_text(ca.cert_pem)
    junit = tmp_path / "junit.xml"
    html = tmp_path / "report.html"
    with hostile_device(tmp_path / "evil", CONTROL_REASON) as device:
        inv = str(_hostile_inventory(tmp_path, sim, device))
        runs = [
            cli("--junit", str(junit), "push-ca", str(pem), "-i", inv, env=WIDE),
            cli("status", "-i", inv, env=WIDE),
            cli("status", "-i", inv, "-o", "prometheus"),
            cli("report", "--html", str(html), "-i", inv, env=WIDE),
        ]
        as_json = cli("status", "-i", inv, "-o", "json")
    runs.append(cli("runs", "show", "last", env=WIDE))
    assert [r.exit_code for r in runs] == [1, 1, 1, 1, 0], [r.output for r in runs]
    for result in runs:
        assert not RAW.search(result.output), (result.output, RAW.search(result.output))
    assert "\\x9b2J" in runs[0].stdout and "\\u202eevil" in runs[1].stdout
    assert "\\u202eAC lairE" in runs[1].stdout  # the CA's subject, read back from the devices
    root = ET.parse(junit).getroot()  # valid XML
    texts = [e.text or "" for e in root.iter()] + [v for e in root.iter()
                                                   for v in e.attrib.values()]
    assert any("\\x9b2J" in t for t in texts)
    assert not any(RAW.search(t.replace("\n", "")) for t in texts)
    page = html.read_text()
    assert not RAW.search(page) and "\\u202eAC lairE" in page
    # JSON keeps what the device said, exactly (JSON escapes it itself)
    evil = next(d for d in as_json.json()["devices"] if d["device"] == "evil-room")
    assert evil["error"]["reason"] == CONTROL_REASON
