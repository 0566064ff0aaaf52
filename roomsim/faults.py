"""Injectable per-device faults, the `--faults FILE` JSON format and `--fault SPEC`.

A faults file maps targets to faults:

    {"room-001": {"latency": 0.2}, "*": {"garbage": true}, "10%": {"truncate": true},
     "seed": 7}

A target is a device name, `"*"` (every device) or `"P%"` (a share of the fleet, `0 < P <=
100`). The devices of a share are chosen deterministically: `sorted(names)`, then
`random.Random(f"roomsim-faults/{seed}/{P}").sample(...)` of `max(1, round-half-up(N * P /
100))` devices. `seed` (an integer, default 0) is the optional top-level `"seed"` key of the
file or `--fault-seed`. Different percentages draw independent sets (their seeds differ);
the same percentage always names the same set, so `truncate@10%` and `latency=0.2@10%` land
on the same devices. Precedence, lowest first: `"*"`, then shares in increasing percentage,
then device names.

On the command line, `--fault NAME[=VALUE][@TARGET]` (repeatable) adds to the file: the
value defaults to true (for the on/off faults) and the target to `*`; values are read as
true/false, numbers or text (`hostile_xml=external`). Examples: `truncate@10%`,
`latency=0.2@room-003`, `storm_503=5@*`."""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

ALL_DEVICES = "*"
SEED_KEY = "seed"
HOSTILE_XML_KINDS = ("laughs", "external")
_PERCENT = re.compile(r"^(\d+(?:\.\d+)?)%$")
_COUNTERS = ("storm_503", "offline_after")
_SECONDS = ("latency", "slow_reboot")


class FaultError(ValueError):
    """An unknown fault name, a value of the wrong type or a bad target."""


@dataclass
class Faults:
    """What is wrong with one device right now.

    offline: connections refused (listener closed); latency: seconds added to every
    reply; garbage: getxml/putxml answer 200 with a non-XML body; action_error: every
    putxml answers ActionError; http_status: every request answers that status;
    reject_certificates: Services Add fails by device policy; drop: the connection is
    closed without a reply.

    truncate: every reply with a body stops halfway — status and headers with the full
    Content-Length, about half the body, then the connection is aborted (bodiless replies
    such as the 204 of a session begin go out whole; on /ws an answer frame stops halfway);
    storm_503: the next N requests (HTTP requests and /ws handshakes) answer 503 with
    `Retry-After: 1`, counting down to 0 (then normal again);
    hostile_xml: getxml/putxml answer hostile XML, "laughs" (nested entity expansion, the
    billion laughs) or "external" (an external entity naming file:///etc/passwd);
    slow_reboot: a reboot keeps the device away this many seconds (instead of the fleet's
    `reboot_seconds`); offline_after: the device answers N more requests (HTTP requests,
    /ws handshakes and /ws messages), then goes offline as the `offline` fault (the N-th
    HTTP reply carries `Connection: close`); it stays offline until `offline` is cleared;
    no_sessions: `/xmlapi/session/*` answers 404, before any login is checked, as firmware
    without XML API sessions does (clients fall back to basic auth on every request)."""

    offline: bool = False
    latency: float = 0.0
    garbage: bool = False
    action_error: bool = False
    http_status: int | None = None
    reject_certificates: bool = False
    drop: bool = False
    truncate: bool = False
    storm_503: int = 0
    hostile_xml: str | None = None
    slow_reboot: float = 0.0
    offline_after: int = 0
    no_sessions: bool = False

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

    # -- counters, used by the servers ------------------------------------------------

    def take_storm(self) -> bool:
        """True when this request is one of the storm's 503s (and counts it)."""
        if self.storm_503 <= 0:
            return False
        self.storm_503 -= 1
        return True

    def take_last_request(self) -> bool:
        """Count a request against `offline_after`; True for the last one the device
        answers (the fault then turns into `offline`)."""
        if self.offline_after <= 0:
            return False
        self.offline_after -= 1
        if self.offline_after:
            return False
        self.offline = True
        return True


def _check(name: str, value: Any) -> Any:
    if name not in Faults.names():
        raise FaultError(f"unknown fault {name!r}; known: {', '.join(Faults.names())}")
    if name in _SECONDS:
        if value is None or value is False:
            return 0.0
        if isinstance(value, bool) or not isinstance(value, int | float) or not (
            0 <= value < math.inf
        ):
            raise FaultError(f"fault {name} must be a number of seconds >= 0, not {value!r}")
        return float(value)
    if name in _COUNTERS:
        if value is None or value is False:
            return 0
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise FaultError(f"fault {name} must be a count of requests >= 0, not {value!r}")
        return value
    if name == "http_status":
        if value is None or value is False or value == 0:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 100 <= value <= 599:
            raise FaultError(f"fault http_status must be an HTTP status 100-599, not {value!r}")
        return value
    if name == "hostile_xml":
        if value is None or value is False:
            return None
        if value is True:
            return HOSTILE_XML_KINDS[0]
        if value not in HOSTILE_XML_KINDS:
            raise FaultError(
                f"fault hostile_xml must be one of {', '.join(HOSTILE_XML_KINDS)}, not {value!r}"
            )
        return value
    if value is None:
        return False
    if not isinstance(value, bool):
        raise FaultError(f"fault {name} must be true or false, not {value!r}")
    return value


def check_faults(faults: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a name → value mapping; returns it normalised."""
    return {name: _check(name, value) for name, value in faults.items()}


# ------------------------------------------------------------------ targets and shares


def parse_percent(target: str) -> float | None:
    """`"10%"` → 10.0; None when `target` is not a share. Raises for 0% or over 100%."""
    match = _PERCENT.match(target.strip())
    if match is None:
        if target.strip().endswith("%"):
            raise FaultError(f"target {target!r}: a share is a percentage like 10% or 2.5%")
        return None
    percent = float(match.group(1))
    if not 0 < percent <= 100:
        raise FaultError(f"target {target!r}: a share must be more than 0% and at most 100%")
    return percent


def pick_fraction(names: Iterable[str], percent: float, seed: int = 0) -> list[str]:
    """The devices a `P%` target names: deterministic for (names, percent, seed); see the
    module docstring for the rule. Returned sorted."""
    if not 0 < percent <= 100:
        raise FaultError(f"a share must be more than 0% and at most 100%, not {percent:g}%")
    ordered = sorted(names)
    if not ordered:
        return []
    count = min(len(ordered), max(1, math.floor(len(ordered) * percent / 100 + 0.5)))
    rng = random.Random(f"roomsim-faults/{seed}/{percent:g}")
    return sorted(rng.sample(ordered, count))


@dataclass
class FaultPlan:
    """Faults by target (device name, "*" or "P%") and the seed that picks the shares.
    `origins` says where each target's faults came from, for error messages."""

    targets: dict[str, dict[str, Any]] = field(default_factory=dict)
    seed: int = 0
    origins: dict[str, str] = field(default_factory=dict)

    def add(self, target: str, faults: Mapping[str, Any], origin: str) -> None:
        if target != ALL_DEVICES:
            parse_percent(target)  # validates a share
        self.targets.setdefault(target, {}).update(faults)
        self.origins.setdefault(target, origin)

    def merge(self, other: FaultPlan) -> FaultPlan:
        """`other` on top of this plan (its faults win; its seed wins when not 0)."""
        merged = FaultPlan({k: dict(v) for k, v in self.targets.items()},
                           other.seed or self.seed, dict(self.origins))
        for target, faults in other.targets.items():
            merged.add(target, faults, other.origins.get(target, target))
        return merged

    def resolve(self, names: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Device name → the faults this plan gives it (devices without any are left out).
        Raises FaultError for a device name not in `names`, naming where it came from."""
        known = set(names)
        shares: list[tuple[float, str]] = []
        devices: list[str] = []
        for target in self.targets:
            if target == ALL_DEVICES:
                continue
            percent = parse_percent(target)
            if percent is not None:
                shares.append((percent, target))
            elif target not in known:
                origin = self.origins.get(target, target)
                raise FaultError(f"{origin}: no simulated device named {target!r}")
            else:
                devices.append(target)
        result: dict[str, dict[str, Any]] = {}

        def give(name: str, faults: Mapping[str, Any]) -> None:
            result.setdefault(name, {}).update(faults)

        if ALL_DEVICES in self.targets:
            for name in names:
                give(name, self.targets[ALL_DEVICES])
        for percent, target in sorted(shares):
            for name in pick_fraction(names, percent, self.seed):
                give(name, self.targets[target])
        for name in devices:
            give(name, self.targets[name])
        return {name: result[name] for name in names if name in result}


def load_faults_file(path: Path) -> FaultPlan:
    """Read and validate a faults file (see the module docstring)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise FaultError(f"{path}: cannot read faults file: {exc}") from exc
    if not isinstance(data, dict):
        raise FaultError(f"{path}: expected a JSON object of device name -> faults")
    plan = FaultPlan()
    for target, faults in data.items():
        if target == SEED_KEY:
            if isinstance(faults, bool) or not isinstance(faults, int):
                raise FaultError(f"{path}: seed must be an integer, not {faults!r}")
            plan.seed = faults
            continue
        if not isinstance(faults, dict):
            raise FaultError(f"{path}: faults for {target!r} must be an object")
        try:
            checked = check_faults(faults)
            plan.add(str(target), checked, f"{path}: {target}")
        except FaultError as exc:
            raise FaultError(f"{path}: {target}: {exc}") from exc
    return plan


def _value(text: str) -> Any:
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip()


def parse_fault_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """`NAME[=VALUE][@TARGET]` → (target, {name: value}); FaultError naming the spec."""
    try:
        head, at, target = spec.partition("@")
        target = target.strip() if at else ALL_DEVICES
        if not target:
            raise FaultError("nothing after @ (a device name, * or a share like 10%)")
        name, eq, raw = head.partition("=")
        name = name.strip()
        if not name:
            raise FaultError("no fault name")
        if eq and not raw.strip():
            raise FaultError(f"no value after {name}=")
        value = _value(raw) if eq else True
        if target != ALL_DEVICES:
            parse_percent(target)
        return target, check_faults({name: value})
    except FaultError as exc:
        raise FaultError(
            f"--fault {spec!r}: {exc} (expected NAME[=VALUE][@TARGET], e.g. truncate@10%, "
            "latency=0.2@room-003, storm_503=5@*)"
        ) from None


def plan_from_specs(specs: Iterable[str], seed: int | None = None) -> FaultPlan:
    """A FaultPlan from `--fault` specs (and `--fault-seed`)."""
    plan = FaultPlan(seed=seed or 0)
    for spec in specs:
        target, faults = parse_fault_spec(spec)
        plan.add(target, faults, f"--fault {spec!r}")
    return plan
