"""Injectable per-device faults and the `--faults FILE` JSON format:
`{"room-001": {"latency": 0.2}, "*": {"garbage": true}}` ("*" = every device)."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

ALL_DEVICES = "*"


class FaultError(ValueError):
    """An unknown fault name or a value of the wrong type."""


@dataclass
class Faults:
    """What is wrong with one device right now.

    offline: connections refused (listener closed); latency: seconds added to every
    reply; garbage: getxml/putxml answer 200 with a non-XML body; action_error: every
    putxml answers ActionError; http_status: every request answers that status;
    reject_certificates: Services Add fails by device policy; drop: the connection is
    closed without a reply."""

    offline: bool = False
    latency: float = 0.0
    garbage: bool = False
    action_error: bool = False
    http_status: int | None = None
    reject_certificates: bool = False
    drop: bool = False

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def update(self, **values: Any) -> None:
        """Set some faults; a falsy value (False, 0, None) clears that fault."""
        checked = {name: _check(name, value) for name, value in values.items()}
        for name, value in checked.items():
            setattr(self, name, value)

    def clear(self) -> None:
        self.update(**{name: None for name in self.names()})

    def active(self) -> dict[str, Any]:
        default = Faults()
        return {
            n: getattr(self, n) for n in self.names() if getattr(self, n) != getattr(default, n)
        }


def _check(name: str, value: Any) -> Any:
    if name not in Faults.names():
        raise FaultError(f"unknown fault {name!r}; known: {', '.join(Faults.names())}")
    if name == "latency":
        if value is None:
            return 0.0
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise FaultError(f"fault latency must be a number of seconds >= 0, not {value!r}")
        return float(value)
    if name == "http_status":
        if value is None or value is False or value == 0:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 100 <= value <= 599:
            raise FaultError(f"fault http_status must be an HTTP status 100-599, not {value!r}")
        return value
    if value is None:
        return False
    if not isinstance(value, bool):
        raise FaultError(f"fault {name} must be true or false, not {value!r}")
    return value


def load_faults_file(path: Path) -> dict[str, dict[str, Any]]:
    """Read and validate a faults file; keys are device names or "*"."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise FaultError(f"{path}: cannot read faults file: {exc}") from exc
    if not isinstance(data, dict):
        raise FaultError(f"{path}: expected a JSON object of device name -> faults")
    result: dict[str, dict[str, Any]] = {}
    for device, faults in data.items():
        if not isinstance(faults, dict):
            raise FaultError(f"{path}: faults for {device!r} must be an object")
        try:
            Faults().update(**faults)
        except FaultError as exc:
            raise FaultError(f"{path}: {device}: {exc}") from exc
        result[str(device)] = dict(faults)
    return result
