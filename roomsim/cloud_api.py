"""The JSON shapes of the simulated Webex cloud API (reference: webex-cloud-api.md), with no
HTTP in them: Webex-style ids, `/v1/devices` items and filters, xAPI command arguments and
results, status expressions, `/v1/xapi/schema` entries, and device configuration items and
JSON Patch operations. `roomsim/cloud.py` serves them.

Results are built from the same XML trees the local API serves, so both APIs always agree:
an element with `item="n"` becomes a list of objects keyed by `"id": n` (§1.2: arrays are
lists of objects keyed by id), other elements nest as objects, and leaves are strings
except the few the RoomOS schema types as integers."""

from __future__ import annotations

import base64
import fnmatch
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .commands import CommandRegistry, CommandSpec, Param
from .configuration import SCHEMA, ConfigLeaf, NodeFor

JsonObject = dict[str, Any]
# A node path: (name, item number or None) per level, e.g. (("Network", 1), ("IEEE8021X", None)).
NodePath = tuple[tuple[str, int | None], ...]

MAX_STATUS_NAMES = 10  # §1.3
MAX_SCHEMA_DEVICES = 5  # §1.4
PAGE_DEFAULT = 100  # §2: default and maximum `max` not documented; 100 and 1000 chosen
PAGE_MAX = 1000
CONFIGURED_VALUE = "/sources/configured/value"  # §3: every PATCH path ends with this

# Leaves the RoomOS schema types as Integer (§1.3: values come back as native JSON types).
_INTEGER_LEAVES = frozenset(
    {"CompatibilityLevel", "ProfileID", "PublicKeySize", "Uptime", "Version"}
)
_INTEGER = re.compile(r"-?(0|[1-9][0-9]{0,17})")
_ID_NAMESPACE = uuid.UUID("9b7a4f0e-2c61-4d8e-a1f3-5e0c7d2b8a14")
_STEP = re.compile(r"^(?P<name>\*|[A-Za-z0-9_-]+)(?:\[(?P<index>[^\]]*)\])?$")
_RANGE = re.compile(r"^(?P<first>[0-9]+)\.\.(?P<last>[0-9]+|n)$")
_ARGUMENT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class CloudError(Exception):
    """An error answer: HTTP `status`, the Webex error body carrying `message`, `headers`."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


# --------------------------------------------------------------------------- ids


def webex_id(kind: str, seed: str) -> str:
    """A stable id shaped like Webex's: base64url (no padding) of
    `ciscospark://us/{kind}/{uuid}`. The uuid is name-based and starts with a digit, so
    every device id starts `Y2lzY29zcGFyazovL3VzL0RFVklDRS8` as real ones do."""
    text = str(uuid.uuid5(_ID_NAMESPACE, f"{kind}:{seed}"))
    if not text[0].isdigit():
        text = str(int(text[0], 16) - 10) + text[1:]
    raw = f"ciscospark://us/{kind}/{text}".encode("ascii")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def device_id_for(name: str) -> str:
    return webex_id("DEVICE", name)


ORG_ID = webex_id("ORGANIZATION", "roomsim")
LOCATION_ID = webex_id("LOCATION", "roomsim")


# --------------------------------------------------------------------------- expressions


@dataclass(frozen=True)
class Step:
    """One level of an xAPI expression: a name (lowercase) or `*`, and which items.

    No brackets: any item (or none); `[*]`: any item; `[3]`, `[2..3]`, `[2..n]`."""

    name: str
    first: int | None = None
    last: int | None = None  # None with `first` set: no upper bound

    def matches(self, name: str, item: int | None) -> bool:
        if self.name != "*" and self.name != name.lower():
            return False
        if self.first is None:
            return True
        if item is None or item < self.first:
            return False
        return self.last is None or item <= self.last


def parse_expression(text: str) -> list[Step] | None:
    """`Network[1].IEEE8021X.*`, `*.Version`, `FacilityService.Service[2..n].Name` → steps;
    None when the expression is not well formed. Names match case-insensitively (§1.3)."""
    steps: list[Step] = []
    for part in re.split(r"\.(?![^\[]*\])", text.strip()):
        match = _STEP.match(part)
        if match is None:
            return None
        name, index = match.group("name").lower(), match.group("index")
        if index is None or index.strip() == "*":
            steps.append(Step(name))
        elif index.strip().isdigit():
            steps.append(Step(name, int(index), int(index)))
        elif (found := _RANGE.match(index.strip())) is not None:
            last = found.group("last")
            steps.append(Step(name, int(found.group("first")), None if last == "n" else int(last)))
        else:
            return None
    return steps


def expression_matches(steps: Sequence[Step], path: NodePath) -> bool:
    """True when `steps` name `path` or one of the nodes above it (a node stands for
    everything below it)."""
    if len(steps) > len(path):
        return False
    return all(step.matches(name, item) for step, (name, item) in zip(steps, path, strict=False))


def _parse_all(expressions: Iterable[str]) -> list[list[Step]]:
    return [steps for text in expressions if (steps := parse_expression(text)) is not None]


# --------------------------------------------------------------------------- XML → JSON


def flatten(root: ET.Element) -> list[tuple[NodePath, str]]:
    """Every leaf below `root` (not `root` itself) with its path, in document order."""
    leaves: list[tuple[NodePath, str]] = []

    def visit(node: ET.Element, path: NodePath) -> None:
        if len(node) == 0:
            leaves.append((path, node.text or ""))
            return
        for child in node:
            visit(child, (*path, (child.tag, _item(child))))

    for child in root:
        visit(child, ((child.tag, _item(child)),))
    return leaves


def _item(element: ET.Element) -> int | None:
    item = (element.get("item") or "").strip()
    return int(item) if item.isdigit() else None


def typed(name: str, value: str) -> str | int:
    return int(value) if name in _INTEGER_LEAVES and _INTEGER.fullmatch(value) else value


def nest(leaves: Iterable[tuple[NodePath, str]]) -> JsonObject:
    """Leaves back into a tree: objects, and lists of `{"id": n, ...}` for items."""
    root: JsonObject = {}
    for path, value in leaves:
        node = root
        for depth, (name, item) in enumerate(path):
            last = depth == len(path) - 1
            if item is None:
                if last:
                    node[name] = typed(name, value)
                    break
                child = node.get(name)
                if not isinstance(child, dict):
                    child = node[name] = {}
                node = child
                continue
            items = node.get(name)
            if not isinstance(items, list):
                items = node[name] = []
            entry = next((e for e in items if e.get("id") == item), None)
            if entry is None:
                entry = {"id": item}
                items.append(entry)
            if last:
                entry["value"] = typed(name, value)
                break
            node = entry
    return root


def select_status(tree: ET.Element, expressions: Sequence[str]) -> JsonObject:
    """The `result` of `GET /v1/xapi/status`: the leaves any expression names; an
    expression naming nothing (or malformed) adds nothing (§1.3: 200 with `{}`)."""
    parsed = _parse_all(expressions)
    return nest(
        (path, value)
        for path, value in flatten(tree)
        if any(expression_matches(steps, path) for steps in parsed)
    )


# --------------------------------------------------------------------------- commands


def dotted(path: Sequence[str]) -> str:
    return ".".join(path)


def find_command(registry: CommandRegistry, name: str) -> CommandSpec | None:
    """The command `Security.Certificates.CA.Add` names (case-insensitive, §1.2)."""
    wanted = tuple(part.lower() for part in name.split("."))
    for path, spec in registry.commands.items():
        if tuple(part.lower() for part in path) == wanted:
            return spec
    return None


def is_disallowed(spec: CommandSpec, patterns: Iterable[str]) -> bool:
    """True when a pattern (`Security.Certificates.*`, case-insensitive) names the command."""
    name = dotted(spec.path).lower()
    return any(fnmatch.fnmatchcase(name, pattern.lower()) for pattern in patterns)


def command_document(
    spec: CommandSpec, arguments: Mapping[str, Any], body: str | None
) -> ET.Element:
    """The putxml `<Command>` document for a cloud command, so it runs through the same
    registry, validation and handlers as the local API. Argument names match the
    command's parameters case-insensitively; a JSON array is a repeated argument."""
    root = ET.Element("Command")
    node = root
    for part in spec.path:
        node = ET.SubElement(node, part)
    canonical = {param.name.lower(): param.name for param in spec.params}
    for given, value in arguments.items():
        if not _ARGUMENT_NAME.match(given) or given.lower() == "body":
            raise CloudError(400, f"Unknown parameter: {given}")
        name = canonical.get(given.lower(), given)
        if isinstance(value, list):
            for number, each in enumerate(value, 1):
                ET.SubElement(node, name, item=str(number)).text = _argument_text(name, each)
        else:
            ET.SubElement(node, name).text = _argument_text(name, value)
    if body is not None:
        ET.SubElement(node, "body").text = body
    return root


def _argument_text(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int | float | str):
        return str(value)
    raise CloudError(400, f"Invalid value for argument {name}: give a string, number or boolean")


def command_result(result: ET.Element) -> JsonObject:
    """`<CAShowResult status="OK"><Details item="1">…` → `{"Details": [{"id": 1, …}], …}`."""
    return nest(flatten(result))


def _param_schema(param: Param) -> JsonObject:
    schema: JsonObject = (
        {"type": "string", "enum": list(param.literals)}
        if param.literals is not None
        else {"type": "string", "minLength": 0, "maxLength": param.max_len}
    )
    if param.max_items > 1:
        schema = {"type": "array", "items": schema, "maxItems": param.max_items}
    if param.default is not None:
        schema["default"] = param.default
    return schema


def command_schemas(
    registry: CommandRegistry, patterns: Sequence[str] | None, disallowed: Iterable[str],
    narrow: Callable[[tuple[str, ...]], CommandSpec | None] | None = None,
) -> JsonObject:
    """`commands` of a `/v1/xapi/schema` entry (§1.4): every command the cloud allows
    that a pattern names (None: every one); `narrow` gives the command as the device's
    release has it (None: the device lacks it)."""
    parsed = None if patterns is None else _parse_all(patterns)
    blocked = list(disallowed)
    out: JsonObject = {}
    for path, known in sorted(registry.commands.items()):
        spec = narrow(path) if narrow is not None else known
        if spec is None:
            continue
        node_path: NodePath = tuple((part, None) for part in path)
        if parsed is not None and not any(expression_matches(s, node_path) for s in parsed):
            continue
        if is_disallowed(spec, blocked):
            continue
        entry: JsonObject = {
            "arguments": {
                param.name: {"required": param.required, "schema": _param_schema(param)}
                for param in spec.params
            },
            "resultSchema": {"type": "object"},
        }
        if spec.multiline:
            entry["bodySchema"] = {"schema": {"type": "string", "maxLength": 4194304}}
        out[dotted(path)] = entry
    return out


def status_schemas(tree: ET.Element, patterns: Sequence[str] | None) -> JsonObject:
    """`status` of a `/v1/xapi/schema` entry: one key per status leaf (items folded)."""
    parsed = None if patterns is None else _parse_all(patterns)
    out: JsonObject = {}
    for path, value in flatten(tree):
        if parsed is not None and not any(expression_matches(s, path) for s in parsed):
            continue
        key = ".".join(name for name, _ in path)
        kind = "integer" if isinstance(typed(path[-1][0], value), int) else "string"
        out.setdefault(key, {"schema": {"type": kind}})
    return out


# --------------------------------------------------------------------------- configurations


def config_key(leaf: ConfigLeaf) -> str:
    """`Network[1]/IEEE8021X/Mode` → `Network[1].IEEE8021X.Mode`, the cloud's key form."""
    return leaf.key.replace("/", ".")


def _config_path(leaf: ConfigLeaf) -> NodePath:
    return tuple((segment.name, segment.item) for segment in leaf.segments)


def _accepted_keys() -> dict[str, str]:
    """Keys as the cloud accepts them → roomsim keys: case-insensitive, and `[1]` may be
    left out of a list node (`Network.IEEE8021X.Mode`)."""
    keys = {config_key(leaf).lower(): leaf.key for leaf in SCHEMA.values()}
    for leaf in SCHEMA.values():
        keys.setdefault(config_key(leaf).lower().replace("[1]", ""), leaf.key)
    return keys


_CONFIG_KEYS = _accepted_keys()


def _value_space(leaf: ConfigLeaf) -> JsonObject:
    if leaf.literals is not None:
        return {"type": "string", "enum": list(leaf.literals)}
    return {"type": "string", "minLength": 0, "maxLength": leaf.max_len}


def config_item(leaf: ConfigLeaf, value: str) -> JsonObject:
    """One item of `GET /v1/deviceConfigurations` (§3). A value differing from the
    default counts as configured; hidden values (passwords) read as ""."""
    configured = value != leaf.default
    shown = "" if leaf.hidden else value
    return {
        "value": shown,
        "source": "configured" if configured else "default",
        "sources": {
            "default": {
                "value": leaf.default,
                "editability": {"isEditable": False, "reason": "FACTORY_DEFAULT"},
            },
            "configured": {
                "value": shown if configured else None,
                "editability": {"isEditable": True},
            },
        },
        "valueSpace": _value_space(leaf),
    }


def config_items(
    config: Mapping[str, str], keys: Sequence[str] | None, node_for: NodeFor | None = None
) -> JsonObject:
    """`items` for the configuration `config`, limited to what `keys` name (None: all)
    and, with `node_for`, to what the device's release and product have."""
    parsed = None if keys is None else _parse_all(keys)
    items: JsonObject = {}
    for leaf in SCHEMA.values():
        if node_for is not None and node_for(leaf.key) is None:
            continue
        if parsed is not None and not any(
            expression_matches(steps, _config_path(leaf)) for steps in parsed
        ):
            continue
        items[config_key(leaf)] = config_item(leaf, config.get(leaf.key, leaf.default))
    return items


def parse_patch(document: Any) -> dict[str, str | None]:
    """Validate a JSON Patch for `/v1/deviceConfigurations` (§3): ops `replace` (set the
    configured value) and `remove` (back to the default), paths
    `<Key>/sources/configured/value`, values native JSON (every simulated key is a
    string). Returns {roomsim key: new value, None for remove}; nothing is applied when
    any operation is bad."""
    if not isinstance(document, list):
        raise CloudError(400, "The request body must be a JSON Patch array of operations")
    changes: dict[str, str | None] = {}
    for number, operation in enumerate(document, 1):
        where = f"Operation {number}"
        if not isinstance(operation, dict):
            raise CloudError(400, f"{where}: expected an object with op and path")
        op, path = operation.get("op"), operation.get("path")
        if op not in ("replace", "remove"):
            raise CloudError(400, f"{where}: unsupported op {op!r}; use replace or remove")
        if not isinstance(path, str) or not path.endswith(CONFIGURED_VALUE):
            raise CloudError(400, f"{where}: path must be <Key>{CONFIGURED_VALUE}, not {path!r}")
        name = path.removeprefix("/").removesuffix(CONFIGURED_VALUE)
        key = _CONFIG_KEYS.get(name.lower())
        if key is None:
            raise CloudError(400, f"{where}: unknown configuration key {name!r}")
        leaf = SCHEMA[key]
        if op == "remove":
            changes[key] = None
            continue
        if "value" not in operation:
            raise CloudError(400, f"{where}: replace needs a value")
        value = operation["value"]
        if not isinstance(value, str):
            raise CloudError(
                400, f"{where}: {config_key(leaf)} takes a string, not {type(value).__name__}"
            )
        canonical = leaf.canonical(value)
        if canonical is None:
            raise CloudError(400, f"{where}: invalid value {value!r} for {config_key(leaf)}")
        changes[key] = canonical
    return changes


def apply_changes(config: dict[str, str], changes: Mapping[str, str | None]) -> bool:
    """Apply parsed PATCH changes to a configuration; True when a value changed."""
    changed = False
    for key, value in changes.items():
        new = SCHEMA[key].default if value is None else value
        if config.get(key) != new:
            config[key] = new
            changed = True
    return changed


# --------------------------------------------------------------------------- device list


def _loose(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def _values(query: Mapping[str, Sequence[str]], name: str) -> list[str]:
    return [v.strip() for raw in query.get(name, ()) for v in raw.split(",") if v.strip()]


def matches_filters(item: Mapping[str, Any], query: Mapping[str, Sequence[str]]) -> bool:
    """The `/v1/devices` filters (§2). `displayName`, `software` and `product` match a part
    of the value (product ignoring case, spaces and dashes: `DX80` finds "Cisco Webex
    DX80"); every `tag` must be present; the others match whole values, ignoring case.
    Unknown parameters are ignored."""
    for name, field_name in (("displayName", "displayName"), ("software", "software")):
        for wanted in query.get(name, ()):
            if wanted.lower() not in str(item.get(field_name, "")).lower():
                return False
    for wanted in query.get("product", ()):
        if _loose(wanted) not in _loose(str(item.get("product", ""))):
            return False
    tags = {tag.lower() for tag in item.get("tags", [])}
    if any(tag.lower() not in tags for tag in _values(query, "tag")):
        return False
    exact = (
        "connectionStatus", "type", "serial", "workspaceId", "personId", "orgId",
        "locationId", "devicePlatform", "upgradeChannel",
    )  # fmt: skip
    for name in exact:
        for wanted in query.get(name, ()):
            if str(item.get(name, "")).lower() != wanted.lower():
                return False
    for wanted in query.get("mac", ()):
        if _loose(wanted) != _loose(str(item.get("mac", ""))):
            return False
    for name, field_name in (
        ("capability", "capabilities"),
        ("permission", "permissions"),
        ("errorCode", "errorCodes"),
    ):
        for wanted in query.get(name, ()):
            if wanted not in item.get(field_name, []):
                return False
    return True
