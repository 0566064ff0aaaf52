"""docs/ci.md, executed: every `certfleet` line in its code blocks runs against a simulated
fleet as the nightly pipeline would, in 3 shards; the JUnit files together cover every device
once, the JSON documents are valid, and the HTML report is written."""

from __future__ import annotations

import json
import re
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

DOC = Path(__file__).resolve().parents[2] / "docs" / "ci.md"


def doc_commands() -> list[str]:
    """The certfleet command lines of the page's code blocks, in order, without duplicates."""
    text = DOC.read_text()
    commands: list[str] = []
    for block in re.findall(r"```(?:sh|yaml)\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            stripped = re.sub(r"^\s*(?:- )?(?:run: )?", "", line)
            if stripped.startswith("certfleet ") and stripped not in commands:
                commands.append(stripped)
    return commands


def run_line(cli: Any, line: str, env: dict[str, str]) -> Any:
    expanded = re.sub(r"\$(\w+)", lambda m: env.get(m.group(1), m.group(0)), line)
    words = shlex.split(expanded)
    out_file = None
    if ">" in words:
        at = words.index(">")
        out_file, words = Path(words[at + 1]), words[:at]
    assert words[0] == "certfleet"
    result = cli(*words[1:])
    if out_file is not None:
        out_file.write_text(result.stdout)
    return result


@pytest.mark.slow
def test_the_documented_nightly_pipeline(sim: Any, tmp_path: Path, cli: Any,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "repo"
    (work / "inventories").mkdir(parents=True)
    (work / "reports").mkdir()
    monkeypatch.chdir(work)
    secrets = {
        "ROOM_ADMIN_PASSWORD": sim.password,
        "CERTFLEET_CA_PASSPHRASE": "ci-ca-passphrase-0451",
        "CERTFLEET_JOURNAL_PASSPHRASE": "ci-journal-passphrase-7733",
    }
    for key, value in secrets.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CERTFLEET_INVENTORY", "inventories/rooms.yaml")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cli("ca", "init", "--dir", "ca", "--cn", "Rooms CA").exit_code == 0
    trust = work / "device-cas.pem"
    trust.write_text(sim.ca_pem_path.read_text() + (work / "ca" / "ca.pem").read_text())
    inventory = yaml.safe_load(sim.inventory_path.read_text())
    inventory["defaults"].update({
        "password": "env:ROOM_ADMIN_PASSWORD",
        "verify": f"ca:{trust}",
        "certificate": {"key": "ec-p256", "subject": {"O": "Example"}, "san_ip": ["{host}"]},
    })
    (work / "inventories" / "rooms.yaml").write_text(yaml.safe_dump(inventory))

    commands = doc_commands()
    assert len(commands) >= 8, commands
    per_shard = [c for c in commands if "$SHARD" in c]
    once = [c for c in commands if "$SHARD" not in c and "completion" not in c]
    completion = [c for c in commands if "completion" in c]
    # the pipeline: check, then every shard's steps (a CI matrix of 3 jobs)
    first = [c for c in once if "inventory check" in c]
    for line in first:
        assert run_line(cli, line, {}).exit_code == 0, line
    for shard in ("1", "2", "3"):
        env = {"SHARD": shard}
        monkeypatch.setenv("CERTFLEET_JOURNAL", str(work / "reports" / f"journal-{shard}.sqlite"))
        for line in per_shard:
            result = run_line(cli, line, env)
            assert result.exit_code == 0, (line, result.output)
    # every device in exactly one shard's JUnit file
    seen: list[str] = []
    for shard in ("1", "2", "3"):
        suite = ET.parse(work / "reports" / f"rotate-{shard}.xml").getroot().find("testsuite")
        assert suite is not None
        seen += [c.get("name") or "" for c in suite.findall("testcase")
                 if " / " not in (c.get("name") or "")]
        rotated = json.loads((work / "reports" / f"rotate-{shard}.json").read_text())
        assert rotated["schema"] == "certfleet/run/v1"
        # the simulated devices' certificates are a year from expiry: nothing is due tonight
        assert rotated["devices"] and all(d["outcome"] == "ok" for d in rotated["devices"])
        status = json.loads((work / "reports" / f"status-{shard}.json").read_text())
        assert status["schema"] == "certfleet/run/v1"
        html = (work / "reports" / f"fleet-{shard}.html").read_text()
        assert "<html" in html.lower()
    assert sorted(seen) == sorted(sim.devices)
    # the remaining documented commands (after a bad night, monitoring)
    monkeypatch.setenv("CERTFLEET_JOURNAL", str(work / "reports" / "journal-1.sqlite"))
    for line in once:
        if line in first:
            continue
        result = run_line(cli, line, {})
        assert result.exit_code == 0, (line, result.output)
    assert "certfleet_certificate_days_left" in (work / "reports" / "certfleet.prom").read_text()
    for line in completion:
        result = run_line(cli, line + " bash", {})
        assert result.exit_code == 0, (line, result.output)
    for secret in secrets.values():
        for path in (work / "reports").iterdir():
            if path.suffix != ".sqlite":
                assert secret not in path.read_text(errors="replace"), path
