"""`python -m certfleet.roomsim serve --devices N --state DIR`."""

from __future__ import annotations

import sys

from .serve import main

if __name__ == "__main__":
    sys.exit(main())
