"""certfleet's engine: inventory, transports, plans and the fleet runner. Never prints.

The front door (loaded when first used, so ``import fleet`` stays cheap)::

    from certfleet import fleet
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
    "run": ".engine",
    "run_async": ".engine",
    "RunConfig": ".engine",
    "resume": ".resumable",
    "load_inventory": ".inventory",
    "Budget": ".runner",
    "DeviceStarted": ".runner",
    "DeviceFinished": ".runner",
    "Notice": ".runner",
    "RunResult": ".results",
    "DeviceResult": ".results",
    "Outcome": ".results",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fleet' has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
