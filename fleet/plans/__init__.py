"""fleet.plans — one module per job: what to read, how to diff, how to apply."""

from fleet.plans.base import DeviceContext, Plan
from fleet.plans.push_ca import PushCa
from fleet.plans.status import DeviceStatus, Expiring, Status, expiring_certificates

__all__ = [
    "DeviceContext",
    "DeviceStatus",
    "Expiring",
    "Plan",
    "PushCa",
    "Status",
    "expiring_certificates",
]
