"""JSON-RPC 2.0 of the WebSocket xAPI (`wss://host/ws`), with no I/O in it: request
parsing, reply/error/notification messages, the JSON view of the XML trees the local API
serves (so HTTP and WebSocket always agree), xGet/xQuery paths and xSet values.
`roomsim/websocket.py` serves it. Shapes follow roomos-local-xapi.md §3.

JSON view of a tree: an element with children is an object keyed by child name; elements
with `item="n"` become a list of objects `{"id": n, ...}` (a list of leaves: `{"id": n,
"value": v}`); leaves are strings, except the few names the RoomOS schema types as
integers (`INTEGER_LEAVES`) when their text is an integer. Command results drop the
`status` attribute: `{"Details": [{"id": 1, "Fingerprint": ...}], "Format": "Text"}`; a
command without output answers `{}`.

Choices where no device capture was found (documented, not confirmed):
- errors: unknown method or command → -32601 "Method not found"; missing/invalid
  parameters (including a command's ParameterError) → -32602 with the reason; a failed
  command → code 1, `message` = Reason, `data` = {"Cause": 1, "Reason": Reason}; xSet of an
  illegal value → code 1 "Illegal value" with Cause 27 (Aldaviva/CSxAPI reads Cause 27 as
  illegal argument); an unknown xGet/xSet path → -32602 "No match on Path argument"; bad JSON →
  -32700 "Parse error"; not an object, batch (array), no method, `jsonrpc` not "2.0" or an
  id that is not a string/number/null → -32600 "Invalid Request".
- a list node without an index in the middle of an xGet/xSet Path means item 1 (as putxml
  does for `<Network>` without `item=`); at the end of an xGet Path it returns every item.
- path names match case-insensitively (getxml does too); command paths match exactly.
- a request without an `id` member is a JSON-RPC notification: run, never answered.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .commands import Args, CommandSpec, ParameterError
from .configuration import SCHEMA

JsonId = str | int | float | None
# A node path: (name, item number or None) per level, from the top node down.
NodePath = tuple[tuple[str, int | None], ...]

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SUBSCRIPTION_LIMIT = -31998
COMMAND_ERROR = 1
CAUSE_FAILED = 1
CAUSE_ILLEGAL_VALUE = 27

NO_MATCH = "No match on Path argument"
ILLEGAL_VALUE = "Illegal value"
COMMAND_PREFIX = "xCommand/"
TOPS = ("Configuration", "Status")
FEEDBACK_TOPS = ("Configuration", "Event", "Status")
ANY_LEVELS = "**"
ANY_NODE = "*"
MAX_PATH_LENGTH = 32

INTEGER_LEAVES = frozenset(
    {"CompatibilityLevel", "ProfileID", "PublicKeySize", "Uptime", "Version"}
)
_INTEGER = re.compile(r"-?(0|[1-9][0-9]{0,17})")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]*")
_INDEX = re.compile(r"[0-9]{1,9}")


class RpcError(Exception):
    """A JSON-RPC error answer. `request_id` is the id to answer with when the request
    itself was malformed (None: JSON null)."""

    def __init__(
        self,
        code: int,
        message: str,
        data: Mapping[str, Any] | None = None,
        request_id: JsonId = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = dict(data) if data is not None else None
        self.request_id = request_id

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def no_match() -> RpcError:
    return RpcError(INVALID_PARAMS, NO_MATCH)


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class Request:
    id: JsonId
    method: str
    params: dict[str, Any]
    notification: bool  # no "id" member: never answered


def parse_request(data: str | bytes) -> Request:
    """One WebSocket message → Request, or RpcError (-32700 / -32600 / -32602)."""
    try:
        message = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise RpcError(PARSE_ERROR, "Parse error") from exc
    if not isinstance(message, dict):
        raise RpcError(INVALID_REQUEST, "Invalid Request: expected a JSON object")
    request_id = message.get("id")
    if request_id is not None and (
        isinstance(request_id, bool) or not isinstance(request_id, str | int | float)
    ):
        raise RpcError(INVALID_REQUEST, "Invalid Request: id must be a string or a number")
    if message.get("jsonrpc") != "2.0":
        raise RpcError(
            INVALID_REQUEST, 'Invalid Request: "jsonrpc" must be "2.0"', request_id=request_id
        )
    method = message.get("method")
    if not isinstance(method, str) or not method:
        raise RpcError(INVALID_REQUEST, "Invalid Request: no method", request_id=request_id)
    params = message.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise RpcError(
            INVALID_PARAMS, "Invalid params: expected a JSON object", request_id=request_id
        )
    return Request(request_id, method, params, notification="id" not in message)


def _dump(message: Mapping[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False)


def result_message(request_id: JsonId, result: Any) -> str:
    return _dump({"jsonrpc": "2.0", "id": request_id, "result": result})


def error_message(request_id: JsonId, error: RpcError) -> str:
    return _dump({"jsonrpc": "2.0", "id": request_id, "error": error.to_json()})


def event_message(subscription_id: int, tree: Mapping[str, Any]) -> str:
    """`xFeedback/Event` notification: `{"Id": n, "Configuration": {...}}` (no `id`)."""
    return _dump(
        {"jsonrpc": "2.0", "method": "xFeedback/Event", "params": {"Id": subscription_id, **tree}}
    )


# --------------------------------------------------------------------------- XML → JSON


def _item(element: ET.Element) -> int | None:
    item = (element.get("item") or "").strip()
    return int(item) if item.isdigit() else None


def leaf_value(name: str, text: str) -> str | int:
    return int(text) if name in INTEGER_LEAVES and _INTEGER.fullmatch(text) else text


def to_json(element: ET.Element) -> Any:
    """The JSON view of `element` (its attributes other than `item` are dropped)."""
    if len(element) == 0:
        return leaf_value(element.tag, element.text or "")
    out: dict[str, Any] = {}
    for child in element:
        number = _item(child)
        value = to_json(child)
        if number is None and child.tag not in out:
            out[child.tag] = value
            continue
        entry = _entry(number, value) if number is not None else value
        existing = out.get(child.tag)
        if isinstance(existing, list):
            existing.append(entry)
        elif child.tag in out:
            out[child.tag] = [existing, entry]
        else:
            out[child.tag] = [entry]
    return out


def _entry(number: int, value: Any) -> dict[str, Any]:
    return {"id": number, **value} if isinstance(value, dict) else {"id": number, "value": value}


def command_result(result: ET.Element) -> dict[str, Any]:
    """`<ServicesShowResult status="OK"><Details item="1">…` → `{"Details": [{"id": 1, …}]…}`."""
    value = to_json(result) if len(result) else {}
    return value if isinstance(value, dict) else {}


def command_error(result: ET.Element) -> RpcError | None:
    """The error a non-OK result element answers with; None for status OK."""
    status = result.get("status", "OK")
    if status == "OK":
        return None
    reason = result.findtext("Reason") or status
    if status == "ParameterError":
        return RpcError(INVALID_PARAMS, reason)
    return RpcError(COMMAND_ERROR, reason, {"Cause": CAUSE_FAILED, "Reason": reason})


# --------------------------------------------------------------------------- commands


def command_path(method: str) -> tuple[str, ...] | None:
    """`xCommand/Security/Certificates/CA/Add` → ("Security", ..., "Add")."""
    if not method.startswith(COMMAND_PREFIX):
        return None
    parts = tuple(method[len(COMMAND_PREFIX) :].split("/"))
    return parts if all(parts) else None


def command_args(spec: CommandSpec, params: Mapping[str, Any]) -> Args:
    """JSON params → the registry's Args: strings as given, numbers as their decimal text,
    a JSON array for an array parameter, `body` the multiline body. ParameterError for
    anything else (booleans, objects, null, an array for a single-valued parameter)."""
    by_name = {p.name: p for p in spec.params}
    given: dict[str, list[str]] = {}
    body: str | None = None
    for name, value in params.items():
        if name == "body":
            if not isinstance(value, str):
                raise ParameterError("Parameter body must be a string")
            body = value
            continue
        param = by_name.get(name)
        if isinstance(value, list):
            if param is not None and param.max_items == 1:
                raise ParameterError(f"Parameter {name} takes one value, not an array")
            given[name] = [_argument_text(name, each) for each in value]
        else:
            given[name] = [_argument_text(name, value)]
    return spec.make_args(given, body)


def logged_params(params: Mapping[str, Any]) -> tuple[dict[str, list[str]], bool]:
    """JSON params as the request log keeps them: (values per name, whether a body came)."""
    given: dict[str, list[str]] = {}
    for name, value in params.items():
        if name == "body":
            continue
        values = value if isinstance(value, list) else [value]
        given[name] = [json.dumps(v) if isinstance(v, bool | dict | list) or v is None
                       else str(v) for v in values]
    return given, "body" in params


def _argument_text(name: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise ParameterError(f"Parameter {name}: give a string or a number, not {json.dumps(value)}")


# --------------------------------------------------------------------------- paths


@dataclass(frozen=True)
class Step:
    """One element of a Path/Query: a node name (or `*` / `**`) and an optional index."""

    name: str
    index: int | None = None

    def matches(self, name: str, item: int | None) -> bool:
        if self.name != ANY_NODE and self.name.lower() != name.lower():
            return False
        return self.index is None or self.index == item


def parse_steps(raw: Any, what: str, *, wildcards: bool = False) -> list[Step]:
    """`["Configuration", "Network", 1, "IEEE8021X"]` → steps. A number (or a string of
    digits) is the index of the node before it."""
    if not isinstance(raw, list) or not raw:
        raise RpcError(INVALID_PARAMS, f"{what} must be a non-empty array")
    if len(raw) > MAX_PATH_LENGTH:
        raise RpcError(INVALID_PARAMS, f"{what} is too long")
    steps: list[Step] = []
    for part in raw:
        if isinstance(part, bool) or not isinstance(part, str | int):
            raise RpcError(INVALID_PARAMS, f"{what}: {json.dumps(part)} is not a name or an index")
        index: int | None = None
        if isinstance(part, int):
            index = part
        elif _INDEX.fullmatch(part):
            index = int(part)
        if index is not None:
            if not steps or steps[-1].index is not None or steps[-1].name == ANY_LEVELS:
                raise RpcError(INVALID_PARAMS, f"{what}: index {part} must follow a node name")
            steps[-1] = Step(steps[-1].name, index)
            continue
        assert isinstance(part, str)
        if part in (ANY_NODE, ANY_LEVELS):
            if not wildcards:
                raise RpcError(INVALID_PARAMS, f"{what}: wildcards are not allowed here")
        elif not _NAME.fullmatch(part):
            raise RpcError(INVALID_PARAMS, f"{what}: {part!r} is not a node name")
        steps.append(Step(part))
    return steps


def top_name(step: Step, allowed: Sequence[str] = TOPS) -> str | None:
    """The canonical top node ("Status", "Configuration"…) `step` names, if any."""
    if step.index is not None:
        return None
    return next((top for top in allowed if top.lower() == step.name.lower()), None)


def get_value(root: ET.Element, steps: Sequence[Step]) -> Any:
    """xGet: the value or subtree at `steps` (below the top node `root`), relative to it."""
    node = root
    for position, step in enumerate(steps):
        children = [c for c in node if c.tag.lower() == step.name.lower()]
        if not children:
            raise no_match()
        if step.index is not None:
            chosen = [c for c in children if _item(c) == step.index]
        elif _item(children[0]) is not None:
            if position == len(steps) - 1:
                return [_entry(_item(c) or 0, to_json(c)) for c in children]
            chosen = [c for c in children if _item(c) == 1]
        else:
            chosen = children
        if not chosen:
            raise no_match()
        node = chosen[0]
    return to_json(node)


def path_matches(steps: Sequence[Step], path: NodePath) -> bool:
    """Does the query `steps` name `path` or a node above it? `**` matches zero or more
    levels, `*` exactly one."""
    if not steps:
        return True
    head, rest = steps[0], steps[1:]
    if head.name == ANY_LEVELS:
        return any(path_matches(rest, path[skip:]) for skip in range(len(path) + 1))
    if not path:
        return False
    name, item = path[0]
    return head.matches(name, item) and path_matches(rest, path[1:])


def prune(
    element: ET.Element, keep: Callable[[NodePath], bool], above: NodePath = ()
) -> ET.Element | None:
    """A copy of `element` holding only the leaves whose path `keep` accepts."""
    path = (*above, (element.tag, _item(element)))
    if len(element) == 0:
        if not keep(path):
            return None
        clone = ET.Element(element.tag, element.attrib)
        clone.text = element.text
        return clone
    kept = [c for c in (prune(child, keep, path) for child in element) if c is not None]
    if not kept:
        return None
    clone = ET.Element(element.tag, element.attrib)
    clone.extend(kept)
    return clone


def query(trees: Iterable[ET.Element], steps: Sequence[Step]) -> dict[str, Any]:
    """xQuery: the matching leaves as one tree from the top node, `{"Status": {...}}`;
    `{}` when nothing matches."""
    out: dict[str, Any] = {}
    for tree in trees:
        kept = prune(tree, lambda path: path_matches(steps, path))
        if kept is not None:
            out[tree.tag] = to_json(kept)
    return out


def wanted_tops(steps: Sequence[Step], allowed: Sequence[str]) -> list[str]:
    """The top nodes a query can match; RpcError when its first step names none."""
    first = steps[0]
    if first.name in (ANY_NODE, ANY_LEVELS):
        return [top for top in allowed if top in TOPS]
    top = top_name(first, allowed)
    if top is None:
        raise RpcError(INVALID_PARAMS, f"Query must start with {' or '.join(allowed)}")
    return [top] if top in TOPS else []


# --------------------------------------------------------------------------- xSet


def config_path(key: str) -> NodePath:
    """The node path of configuration leaf `key` (`Network[1]/IEEE8021X/Mode`)."""
    return (("Configuration", None), *((s.name, s.item) for s in SCHEMA[key].segments))


def config_setting(steps: Sequence[Step], value: Any) -> tuple[str, str]:
    """xSet: (configuration key, canonical value); RpcError for an unknown path, a value
    of the wrong JSON type (-32602) or a value outside the value space (code 1)."""
    if not steps or top_name(steps[0], ("Configuration",)) is None:
        raise no_match()
    rest = steps[1:]
    key = next(
        (
            key
            for key, leaf in SCHEMA.items()
            if len(leaf.segments) == len(rest)
            and all(
                step.name.lower() == segment.name.lower()
                and (step.index is None or step.index == segment.item)
                for step, segment in zip(rest, leaf.segments, strict=True)
            )
        ),
        None,
    )
    if key is None:
        raise no_match()
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise RpcError(INVALID_PARAMS, "Value must be a string or a number")
    canonical = SCHEMA[key].canonical(str(value))
    if canonical is None:
        raise RpcError(
            COMMAND_ERROR, ILLEGAL_VALUE, {"Cause": CAUSE_ILLEGAL_VALUE, "Reason": ILLEGAL_VALUE}
        )
    return key, canonical
