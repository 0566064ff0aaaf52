"""Device-provided text is data in every output: rich markup in a certificate subject or a
device's reason is shown as it is, never parsed (a `[/]` used to crash the whole table), and
control characters never reach a terminal, a JUnit file or a report raw."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hostile_device import hostile_device

from fleet.pki.local_ca import create_ca

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
