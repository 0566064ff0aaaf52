"""fleet.results — what a run did, per device, as plain data.

The CLI renders these as tables; :func:`run_document` turns them into the versioned JSON
document (``certfleet/run/v1``) that scripts rely on. Nothing here knows about rich or Typer.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .errors import CertfleetError, DeviceError, XapiError
from .masking import mask_url_userinfo
from .secrets import redact
from .xapi.transport import Exchange

__all__ = [
    "EXIT_BUDGET",
    "EXIT_FAILED",
    "EXIT_INPUT",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "SCHEMA",
    "Change",
    "DeviceResult",
    "ErrorInfo",
    "Outcome",
    "RunResult",
    "run_document",
]

SCHEMA = "certfleet/run/v1"

EXIT_OK = 0
EXIT_FAILED = 1  # some device failed or was unreachable
EXIT_INPUT = 2  # usage, inventory or input error; nothing was touched
EXIT_BUDGET = 3  # stopped by the failure budget
EXIT_INTERRUPTED = 130


class Outcome(StrEnum):
    OK = "ok"  # nothing to do
    CHANGED = "changed"
    FAILED = "failed"
    UNREACHABLE = "unreachable"
    SKIPPED = "skipped"


def _clean(text: str) -> str:
    return mask_url_userinfo(redact(text))


@dataclass(slots=True)
class Change:
    """One change a plan makes (or, in a dry run, would make) on a device."""

    action: str  # e.g. "ca.add", "ca.delete"
    target: str  # what it acts on, e.g. a fingerprint
    detail: str = ""  # for people, e.g. the subject
    applied: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "target": self.target,
            "detail": self.detail,
            "applied": self.applied,
        }


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """A device's error as it is kept (results, journal) and shown: its texts are redacted
    when it is made, however it is made."""

    kind: str
    message: str
    xpath: str | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "message", _clean(self.message))
        if self.reason is not None:
            object.__setattr__(self, "reason", _clean(self.reason))

    @classmethod
    def from_exception(cls, exc: BaseException) -> ErrorInfo:
        if isinstance(exc, DeviceError):
            return cls(
                kind=exc.kind,
                message=redact(exc.message),
                xpath=exc.xpath,
                reason=redact(exc.reason) if isinstance(exc, XapiError) else None,
            )
        if isinstance(exc, CertfleetError):
            return cls(kind=exc.kind, message=redact(exc.message))
        if isinstance(exc, TimeoutError):
            return cls(kind="timeout", message="device did not finish within its time budget")
        return cls(kind="internal", message=redact(f"{type(exc).__name__}: {exc}"))

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "message": self.message}
        if self.xpath:
            data["xpath"] = self.xpath
        if self.reason and self.reason != self.message:
            data["reason"] = self.reason
        return data


@dataclass(slots=True)
class DeviceResult:
    device: str
    host: str | None
    transport: str
    outcome: Outcome = Outcome.SKIPPED
    changes: list[Change] = field(default_factory=list)
    calls: list[Exchange] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    fingerprints_before: list[str] | None = None
    fingerprints_after: list[str] | None = None
    error: ErrorInfo | None = None
    message: str = ""  # a short line for people, e.g. why it was skipped
    duration_ms: float = 0.0
    #: the device's release and product as this run read them (``Firmware.to_dict``):
    #: version, reported, product, platform, product_code, release_model
    firmware: dict[str, Any] | None = None

    @property
    def failed(self) -> bool:
        return self.outcome in (Outcome.FAILED, Outcome.UNREACHABLE)

    @property
    def changed(self) -> bool:
        return self.outcome is Outcome.CHANGED

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "device": self.device,
            "host": self.host,
            "transport": self.transport,
            "outcome": self.outcome.value,
            "changed": self.changed,
            "failed": self.failed,
            "duration_ms": round(self.duration_ms, 1),
            "steps": [c.to_dict() for c in self.changes],
            "calls": [c.to_dict() for c in self.calls],
            "error": self.error.to_dict() if self.error else None,
        }
        if self.message:
            data["message"] = _clean(self.message)
            if self.outcome is Outcome.SKIPPED:
                data["reason"] = data["message"]  # why it was left alone, e.g. its release
        if self.fingerprints_before is not None or self.fingerprints_after is not None:
            data["fingerprints"] = {
                "before": self.fingerprints_before,
                "after": self.fingerprints_after,
            }
        if self.firmware is not None:
            data["firmware"] = self.firmware
        if self.facts:
            data["facts"] = self.facts
        return data


@dataclass
class RunResult:
    run_id: str
    command: str  # the command line, as typed
    started: dt.datetime
    verb: str = ""  # the plan's name: "push-ca", "status"
    finished: dt.datetime | None = None
    dry_run: bool = False
    devices: list[DeviceResult] = field(default_factory=list)
    stopped_by_budget: bool = False
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        tally = Counter(result.outcome.value for result in self.devices)
        return {outcome.value: tally.get(outcome.value, 0) for outcome in Outcome}

    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        if self.stopped_by_budget:
            return EXIT_BUDGET
        if any(result.failed for result in self.devices):
            return EXIT_FAILED
        return EXIT_OK


def run_document(run: RunResult, *, lazy: bool = False) -> dict[str, Any]:
    """The versioned JSON document. Never holds a secret: texts pass through the redactor.
    ``lazy``: ``devices`` is an iterator that makes each device's part when it is read (a
    writer streaming the document never holds all of it)."""
    return {
        "schema": SCHEMA,
        "run_id": run.run_id,
        "command": run.command,
        "verb": run.verb,
        "dry_run": run.dry_run,
        "started": run.started.isoformat(),
        "finished": run.finished.isoformat() if run.finished else None,
        "exit_code": run.exit_code(),
        "summary": run.counts(),
        "stopped_by_budget": run.stopped_by_budget,
        "interrupted": run.interrupted,
        "notes": [_clean(n) for n in run.notes],
        "devices": (
            (result.to_dict() for result in run.devices) if lazy
            else [result.to_dict() for result in run.devices]
        ),
    }
