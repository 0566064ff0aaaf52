"""fleet.plans — one module per job: what to read, how to diff, how to apply."""

from fleet.plans.base import DeviceContext, Plan
from fleet.plans.enroll import Enroll, ScepServer
from fleet.plans.network import Dot1x, Wifi
from fleet.plans.push_ca import PushCa
from fleet.plans.push_cert import PushCert
from fleet.plans.rotate import Rotate
from fleet.plans.status import DeviceStatus, Expiring, Status, expiring_certificates

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
