"""roomsim: a simulated fleet of Cisco RoomOS devices (Board, Desk, Room Series) on
loopback, speaking the real local xAPI over HTTPS (getxml/putxml, sessions, limits)."""

from __future__ import annotations

from roomsim.device import SimDevice
from roomsim.faults import Faults
from roomsim.fleet import SimFleet, SimFleetThread

__all__ = ["Faults", "SimDevice", "SimFleet", "SimFleetThread"]
