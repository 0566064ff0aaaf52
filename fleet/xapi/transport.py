"""fleet.xapi.transport — the small interface every xAPI wire implements.

A transport moves one xAPI call to one device and back. Replies are normalised to plain
JSON-like data whatever the wire (XML from putxml, JSON from the cloud or JSON-RPC), so the typed
operations in :mod:`fleet.xapi.commands` are written once:

* a command reply is the mapping of the result element's children: leaves are ``str``, elements
  are ``dict``, repeated or ``item=``-numbered elements are ``list``;
* a status/configuration read returns the subtree at the path in the same form.

Every call is recorded as an :class:`Exchange` (what was sent — secrets and bodies never in
clear — what came back, how long it took), so results can say exactly what happened.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol

from ..errors import BadReplyError, DeviceError

__all__ = [
    "MAX_JSON_DEPTH",
    "SECRET_PARAMS",
    "Exchange",
    "ParamValue",
    "Recorder",
    "XapiTransport",
    "describe_body",
    "describe_params",
    "interrupted_call",
    "nested_too_deep",
    "normalise_json",
    "recorded",
    "xpath",
]

ParamValue = str | int | Sequence[str]

#: the deepest nesting a JSON reply may have (RoomOS data is about ten levels deep); deeper is a
#: bad reply, not a RecursionError in whatever walks it
MAX_JSON_DEPTH = 64

#: Parameters whose values are secrets: recorded as "********", never in clear.
SECRET_PARAMS = frozenset({"PrivateKeyPassword", "ChallengePassword", "Password", "Passphrase"})


def xpath(path: Sequence[str]) -> str:
    """``("Security", "Certificates", "CA", "Add")`` → ``"Security/Certificates/CA/Add"``."""
    return "/".join(path)


def nested_too_deep(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether parsed JSON nests structures more than ``limit`` deep (walked without recursion,
    so a hostile reply cannot make the check itself a RecursionError)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Iterable[Any] = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def normalise_json(value: Any, *, item: bool = False, depth: int = 0) -> Any:
    """JSON reply data (the cloud's, or the WebSocket's JSON-RPC) → the shapes every transport
    gives, the ones putxml's XML reads as: leaves ``str`` (``None`` is ``""``, booleans
    ``"True"``/``"False"``, ``1.0`` is ``"1"``), structures ``dict``, arrays ``list``. The
    ``id`` of an array item is its index (putxml's ``item=`` attribute), not data: dropped;
    an object keyed ``"1"``, ``"2"``, ... is an array. Deeper than :data:`MAX_JSON_DEPTH` is
    a bad reply, not a RecursionError."""
    if depth > MAX_JSON_DEPTH and isinstance(value, dict | list):
        raise BadReplyError(f"refused a reply nested more than {MAX_JSON_DEPTH} deep")
    if isinstance(value, dict):
        if value and all(isinstance(k, str) and k.isdigit() for k in value):
            return [normalise_json(value[k], item=True, depth=depth + 1)
                    for k in sorted(value, key=int)]
        return {str(key): normalise_json(child, depth=depth + 1)
                for key, child in value.items() if not (item and key == "id")}
    if isinstance(value, list):
        return [normalise_json(child, item=True, depth=depth + 1) for child in value]
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def describe_params(params: Mapping[str, ParamValue] | None) -> dict[str, Any]:
    """Parameters as they may be shown: secret ones masked."""
    shown: dict[str, Any] = {}
    for key, value in (params or {}).items():
        if key in SECRET_PARAMS:
            shown[key] = "********"
        elif isinstance(value, (str, int)):
            shown[key] = value
        else:
            shown[key] = list(value)
    return shown


def describe_body(body: str) -> str:
    """A body as it may be recorded: what it holds and its size, never its content."""
    certs = body.count("BEGIN CERTIFICATE")
    keys = body.count("PRIVATE KEY-----") // 2
    parts = []
    if certs:
        parts.append(f"{certs} PEM certificate{'s' if certs != 1 else ''}")
    if keys:
        parts.append(f"{keys} private key{'s' if keys != 1 else ''}")
    what = " + ".join(parts) or "text"
    return f"{what}, {len(body.encode())} bytes"


@dataclass(slots=True)
class Exchange:
    """One call to a device, as sent and as answered."""

    kind: str  # "command" | "get" | "configure" | "session"
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    body: str | None = None  # a description of the body ("1 PEM certificate, 1184 bytes"), never it
    http_status: int | None = None
    ok: bool = False
    error: str | None = None
    attempts: int = 1
    duration_ms: float = 0.0
    #: the call was in flight when the device's time ran out (or the run was stopped)
    interrupted: bool = False

    @classmethod
    def command(
        cls, path: Sequence[str], params: Mapping[str, ParamValue] | None, body: str | None
    ) -> Exchange:
        """The record of an xCommand, as every transport writes it: secrets masked, the body
        described, never quoted."""
        return cls(kind="command", path=xpath(path), params=describe_params(params),
                   body=describe_body(body) if body is not None else None)

    @classmethod
    def configure(cls, path: Sequence[str | int], value: str) -> Exchange:
        """The record of a configuration write: a secret leaf's value masked."""
        secret = bool(path) and str(path[-1]) in SECRET_PARAMS
        return cls(kind="configure", path="/".join(str(p) for p in path),
                   params={"value": "********" if secret else value})

    @classmethod
    def read(cls, path: Sequence[str | int]) -> Exchange:
        """The record of a status or configuration read."""
        return cls(kind="get", path="/".join(str(p) for p in path))

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": self.kind,
            "path": self.path,
            "ok": self.ok,
            "duration_ms": round(self.duration_ms, 1),
        }
        if self.params:
            data["params"] = self.params
        if self.body:
            data["body"] = self.body
        if self.http_status is not None:
            data["http_status"] = self.http_status
        if self.attempts > 1:
            data["attempts"] = self.attempts
        if self.error:
            data["error"] = self.error
        if self.interrupted:
            data["interrupted"] = True
        return data


Recorder = Callable[[Exchange], None]


class _Recorded:
    """:func:`recorded`'s context manager (a class: every call of every device goes through
    it, and a generator-based one costs about three times as much)."""

    __slots__ = ("device", "exchange", "recorder", "started")

    def __init__(self, exchange: Exchange, recorder: Recorder | None, device: str) -> None:
        self.exchange, self.recorder, self.device = exchange, recorder, device
        self.started = 0.0

    def __enter__(self) -> Exchange:
        self.started = time.perf_counter()
        return self.exchange

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        exchange = self.exchange
        try:
            if exc is None:
                exchange.ok = True
            elif isinstance(exc, DeviceError):
                exchange.ok = False
                exchange.error = exc.message
                raise exc.with_context(device=self.device, xpath=exchange.path) from None
            elif isinstance(exc, asyncio.CancelledError):
                exchange.ok = False
                exchange.interrupted = True
                exchange.error = ("no answer before the call was cancelled (the device's time "
                                  "ran out)")
        finally:
            exchange.duration_ms = (time.perf_counter() - self.started) * 1000
            if self.recorder is not None:
                self.recorder(exchange)


def recorded(exchange: Exchange, recorder: Recorder | None, device: str) -> _Recorded:
    """Time one call and record it, however it ends — every transport's calls go through
    here. A :class:`DeviceError` gets the device's name and the call's xAPI path; a call
    cancelled in flight (the device's time budget ran out) is marked ``interrupted``, so the
    result can say which call the device did not answer."""
    return _Recorded(exchange, recorder, device)


def interrupted_call(calls: Sequence[Exchange]) -> str | None:
    """The xAPI path of the call that was in flight when a device's time ran out."""
    return next((call.path for call in reversed(calls) if call.interrupted), None)


class XapiTransport(Protocol):
    """One device, one wire. Use as an async context manager: enter logs in, exit logs out."""

    #: "local", "cloud" or "websocket" — reported per device in results
    name: str

    async def __aenter__(self) -> XapiTransport: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    async def command(
        self,
        path: Sequence[str],
        params: Mapping[str, ParamValue] | None = None,
        body: str | None = None,
        *,
        idempotent: bool = False,
    ) -> dict[str, Any]:
        """Run ``xCommand <path>``; return the normalised result mapping or raise DeviceError.

        ``idempotent`` says the call may be repeated after a failure in which the device may
        already have acted (a read, or a write of a value that is the same on repeat).
        """
        ...

    async def get(self, path: Sequence[str | int]) -> Any:
        """Read a status or configuration subtree, e.g. ``("Status", "SystemUnit")``."""
        ...

    async def configure(self, path: Sequence[str | int], value: str) -> None:
        """Set one configuration leaf, e.g. ``(("Network", 1, ...), "On")``."""
        ...
