"""The README's first command: `certfleet demo` tells the whole story and exits 0."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_runs_the_whole_story() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTFLEET_")}
    done = subprocess.run([sys.executable, "-m", "cli.main", "demo"], capture_output=True,
                          text=True, timeout=300, env=env, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    for expected in ("push-ca: 6 changed", "push-ca: 6 ok", "5 changed, 1 unreachable",
                     "rotate: 6 changed", "rotate: 6 ok", "(dry run: nothing was written)"):
        assert expected in out, expected
    assert "PRIVATE KEY" not in out + done.stderr
