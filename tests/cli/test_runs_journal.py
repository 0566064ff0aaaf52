"""`certfleet runs` and the journal file itself, from the command line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from certfleet.fleet.journal import Journal


def test_a_journal_readable_by_others_is_made_private_and_warned_about(
    cli: Any, tmp_path: Path
) -> None:
    path = tmp_path / "shared.sqlite"
    with Journal.open(path):
        pass
    path.chmod(0o644)
    result = cli("runs", "list", "--journal", str(path))
    assert result.exit_code == 0, result.output
    warning = " ".join(result.stderr.split())
    assert "warning:" in warning and str(path) in warning and "0600" in warning
    assert (os.stat(path).st_mode & 0o777) == 0o600
    again = cli("runs", "list", "--journal", str(path))
    assert again.exit_code == 0 and "warning" not in again.stderr
