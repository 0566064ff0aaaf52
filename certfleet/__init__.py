"""certfleet — the one import root of the distribution: ``certfleet.fleet`` (the engine and
its front door), ``certfleet.cli`` (the ``certfleet`` command) and ``certfleet.roomsim`` (the
simulated RoomOS devices). ``from certfleet.fleet import run``; ``python -m certfleet``.

Installed, the three are packages inside this folder (pyproject's package-dir maps the
repository's top-level cli/, fleet/ and roomsim/ folders to them). In a source checkout they
are the folders beside this one: run from the checkout (``PYTHONPATH=<checkout>``, or pytest
in it), this package finds them there, before any finder of another installed copy does, so a
checkout never mixes its own code with someone else's.
"""

from __future__ import annotations

import sys
from importlib.machinery import ModuleSpec, PathFinder
from pathlib import Path
from types import ModuleType

_PARTS = ("cli", "fleet", "roomsim")
_HERE = Path(__file__).resolve().parent


class _CheckoutFinder:
    """``certfleet.<part>`` from the source checkout's ``<part>/`` folder, and nothing else."""

    @classmethod
    def find_spec(cls, fullname: str, path: object = None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        root, _, part = fullname.partition(".")
        if root != __name__ or part not in _PARTS:
            return None
        return PathFinder.find_spec(fullname, [str(_HERE.parent)])


if not (_HERE / "fleet").is_dir() and (_HERE.parent / "fleet" / "__init__.py").is_file():
    sys.meta_path.insert(0, _CheckoutFinder)

from certfleet.fleet import __version__  # noqa: E402  (found through the finder above)

__all__ = ["__version__"]
