"""The certfleet inventory (YAML) describing a simulated fleet."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

from roomsim.device import GROUPS, SimDevice
from roomsim.state import write_atomic

_PLAIN = re.compile(r"^[A-Za-z0-9_./@+\-][A-Za-z0-9_./@+:\-]*$")


def _scalar(value: str) -> str:
    """A YAML scalar: plain when unambiguous, else double-quoted (JSON quoting is YAML)."""
    return value if _PLAIN.match(value) and ": " not in value else json.dumps(value)


def render_inventory(devices: Iterable[SimDevice], password_path: Path, ca_path: Path) -> str:
    lines = [
        "# Written by roomsim for a simulated fleet. Works as-is: certfleet -i THIS_FILE status",
        "defaults:",
        "  transport: local",
        "  username: admin",
        f"  password: {_scalar(f'file:{password_path}')}",
        f"  verify: {_scalar(f'ca:{ca_path}')}",
        "groups:",
        *(f"  {group}: {{tags: [norway]}}" for group in GROUPS),
        "devices:",
    ]
    for device in devices:
        lines.append(
            f"  {_scalar(device.name)}: {{host: {device.host}, port: {device.port}, "
            f"groups: [{device.group}], tags: [{device.product.tag}]}}"
        )
    return "\n".join(lines) + "\n"


def write_inventory(
    path: Path, devices: Iterable[SimDevice], password_path: Path, ca_path: Path
) -> Path:
    path = path.resolve()
    write_atomic(path, render_inventory(devices, password_path, ca_path).encode("utf-8"))
    return path
