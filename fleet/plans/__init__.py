"""fleet.plans — one module per job: what to read, how to diff, how to apply."""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import DeviceContext, Plan
    from .enroll import Enroll, ScepServer
    from .network import Dot1x, Wifi
    from .push_ca import PushCa
    from .push_cert import PushCert
    from .rotate import Rotate
    from .status import DeviceStatus, Expiring, Status, expiring_certificates

#: name -> its module in this package: imported on first use, so `certfleet status` does not
#: load the SCEP client, the network plans and the rest (start-up cost, issue 18)
_LAZY = {
    "DeviceContext": "base", "Plan": "base",
    "Enroll": "enroll", "ScepServer": "enroll",
    "Dot1x": "network", "Wifi": "network",
    "PushCa": "push_ca", "PushCert": "push_cert", "Rotate": "rotate",
    "DeviceStatus": "status", "Expiring": "status", "Status": "status",
    "expiring_certificates": "status",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "DeviceContext",
    "DeviceStatus",
    "Dot1x",
    "Enroll",
    "Expiring",
    "Plan",
    "PushCa",
    "PushCert",
    "Rotate",
    "ScepServer",
    "Status",
    "Wifi",
    "expiring_certificates",
]
