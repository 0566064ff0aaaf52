"""``python -m certfleet``: the ``certfleet`` command."""

from __future__ import annotations

from certfleet.cli.main import main

if __name__ == "__main__":
    main()
