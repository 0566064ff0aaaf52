"""certfleet's engine: inventory, transports, plans and the fleet runner. Never prints.

The front door (loaded when first used, so ``import fleet`` stays cheap)::

    import fleet
    result = fleet.run(plan, devices, fleet.RunConfig(parallel=50))

``run``, ``run_async``, ``RunConfig`` (:mod:`fleet.engine`), ``resume`` (:mod:`fleet.resumable`),
``load_inventory`` (:mod:`fleet.inventory`), ``Budget`` and the events (:mod:`fleet.runner`),
``RunResult``, ``DeviceResult`` and ``Outcome`` (:mod:`fleet.results`).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "run": "fleet.engine",
    "run_async": "fleet.engine",
    "RunConfig": "fleet.engine",
    "resume": "fleet.resumable",
    "load_inventory": "fleet.inventory",
    "Budget": "fleet.runner",
    "DeviceStarted": "fleet.runner",
    "DeviceFinished": "fleet.runner",
    "Notice": "fleet.runner",
    "RunResult": "fleet.results",
    "DeviceResult": "fleet.results",
    "Outcome": "fleet.results",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fleet' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
