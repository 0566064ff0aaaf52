"""The certfleet inventory (YAML) describing a simulated fleet: the local transport (host
and port per device), or the Webex cloud transport (`device_id` per device, with the
simulated cloud API's `api_url`, `api_verify` and bearer `token` in defaults)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .device import GROUPS, SimDevice
from .state import write_atomic

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


@dataclass(frozen=True)
class CloudInventory:
    """What a cloud inventory needs: the API's base URL (`https://127.0.0.1:PORT`), the
    token file and every device's cloud id."""

    api_url: str
    token_path: Path
    device_ids: Mapping[str, str]
    #: the client pacing to write (`api_rate_per_minute`), or None for certfleet's default:
    #: a sim serving a higher rate than Webex's 300/min tells certfleet so
    rate_per_minute: float | None = None


def render_cloud_inventory(
    devices: Iterable[SimDevice], cloud: CloudInventory, ca_path: Path
) -> str:
    lines = [
        "# Written by roomsim for a simulated fleet, reached through its simulated Webex cloud.",
        "defaults:",
        "  transport: cloud",
        f"  api_url: {_scalar(cloud.api_url)}",
        f"  api_verify: {_scalar(f'ca:{ca_path}')}",
        f"  token: {_scalar(f'file:{cloud.token_path}')}",
        *([f"  api_rate_per_minute: {cloud.rate_per_minute:g}"]
          if cloud.rate_per_minute is not None else []),
        "groups:",
        *(f"  {group}: {{tags: [norway]}}" for group in GROUPS),
        "devices:",
    ]
    for device in devices:
        lines.append(
            f"  {_scalar(device.name)}: {{device_id: {_scalar(cloud.device_ids[device.name])}, "
            f"groups: [{device.group}], tags: [{device.product.tag}]}}"
        )
    return "\n".join(lines) + "\n"


def write_inventory(
    path: Path,
    devices: Iterable[SimDevice],
    password_path: Path,
    ca_path: Path,
    cloud: CloudInventory | None = None,
) -> Path:
    """Write the local inventory, or the cloud one when `cloud` is given."""
    path = path.resolve()
    text = (
        render_inventory(devices, password_path, ca_path)
        if cloud is None
        else render_cloud_inventory(devices, cloud, ca_path)
    )
    write_atomic(path, text.encode("utf-8"))
    return path
