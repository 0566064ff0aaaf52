"""The README's first command: `certfleet demo` tells the whole story (issue 17 part 4), prints
every command it runs, and exits 0. It runs as a user would run it: a child process with no
CERTFLEET_* variable set, nothing set up."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

#: (what must be shown, a regex over the command line that shows it)
PARTS = [
    ("push-ca dry run", r"^push-ca \S+corp-root\.pem .*--dry-run$"),
    ("push-ca", r"^push-ca \S+corp-root\.pem -i \S+fleet\.yaml --journal \S+$"),
    ("an offline device, then --limit @failed", r"^push-ca .* --limit @failed$"),
    ("prune, rehearsed", r"^push-ca .* --prune --dry-run$"),
    ("prune", r"^push-ca .* --prune --yes$"),
    ("on-device SCEP enrollment with a renewal profile",
     r"^enroll .*--scep http://127\.0\.0\.1:\d+/scep --ca-fingerprint [0-9a-f]{64} "
     r"--challenge file:\S+ --purpose 802\.1X --renewal-profile$"),
    ("802.1X", r"^dot1x "),
    ("Wi-Fi", r"^wifi .*--ssid corp-rooms$"),
    ("a local CA", r"^ca init --dir \S+lab-ca "),
    ("rotate with a local CA", r"^rotate .*--signer local-ca .*--renew-before 400d$"),
    ("rotate, not due", r"^rotate .*--renew-before 30d$"),
    ("the cloud import", r"^inventory import-webex --api-url https://127\.0\.0\.1:\d+ "),
    ("the cloud transport", r"^push-ca \S+ -i \S+webex\.yaml "),
    ("an HTML report", r"^report .*--html \S+fleet-report\.html$"),
    ("Prometheus", r"^status .*-o prometheus"),
]


@pytest.mark.slow
def test_demo_runs_the_whole_story() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTFLEET_")}
    done = subprocess.run([sys.executable, "-m", "certfleet.cli.main", "demo", "--keep"],
                          capture_output=True, text=True, timeout=300, env=env, check=False)
    kept = re.search(r"The demo's folder is kept: (\S+)", done.stdout)
    folder = Path(kept[1]) if kept else None
    try:
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert folder is not None and folder.is_dir(), done.stdout[-2000:]
        out = done.stdout
        commands = [line[len("$ certfleet "):] for line in out.splitlines()
                    if line.startswith("$ certfleet ")]
        for part, pattern in PARTS:
            assert any(re.search(pattern, c) for c in commands), (part, commands)

        # what happened, as the commands' own summaries say
        for expected in ("push-ca: 8 changed  (dry run: nothing was written)", "push-ca: 8 ok",
                         "push-ca: 7 changed, 1 unreachable", "push-ca: 1 changed",
                         "enroll: 6 changed, 2 skipped", "dot1x: 6 changed, 2 skipped",
                         "wifi: 5 changed, 3 skipped", "rotate: 8 changed", "rotate: 8 ok",
                         "push-ca: 1 ok"):
            assert expected in out, expected
        assert re.search(r"not due: \d+ days left, renew-before 30d", out)
        assert "SIMULATED SCEP responder" in out
        # the fleet mixes releases: a release that cannot do a verb is skipped, and says why
        assert "SCEP enrollment needs RoomOS 11.23.1 or later; room-003" in out
        assert re.search(r"room-00\d +│ cloud +│ ok", out)
        assert "issued by CN=Example Lab CA" in out  # the demo's own TLS handshake
        assert 'certfleet_device_up{device="room-001"} 1' in out
        report = folder / "fleet-report.html"
        assert f"report written to {report}" in out
        assert report.read_text().lstrip().lower().startswith("<!doctype html")

        # every printed command names files that exist (runnable as printed, while the fleet
        # runs), and nothing secret was printed
        for command in commands:
            for arg in shlex.split(command):
                path = arg.split(":", 1)[1] if arg.startswith(("file:", "ca:")) else arg
                if path.startswith(str(folder)) and not path.endswith(".html"):
                    assert Path(path).exists() or path.endswith("lab-ca"), (command, path)
        everything = out + done.stderr
        for secret in (folder / "secrets").iterdir():
            assert secret.read_text().strip() not in everything, secret.name
        assert "PRIVATE KEY" not in everything
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
