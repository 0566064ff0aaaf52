"""roomsim: a simulated fleet of Cisco RoomOS devices (Board, Desk, Room Series) on
loopback, speaking the real local xAPI over HTTPS (getxml/putxml, sessions, limits)."""

from __future__ import annotations

from .device import SimDevice
from .faults import Faults
from .fleet import SimFleet, SimFleetThread

__all__ = ["Faults", "SimDevice", "SimFleet", "SimFleetThread"]
