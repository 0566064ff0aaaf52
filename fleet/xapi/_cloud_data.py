"""fleet.xapi._cloud_data — the Webex cloud's data in the shapes every transport gives: xAPI
paths as the cloud spells them (``Network[1].IEEE8021X.Mode``), replies normalised like the
local transport's, Device Configurations items as a tree, and errors carried in a 200."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import (
    CommandError,
    ParameterError,
)

__all__ = ["ConfigInfo", "config_key", "config_tree", "descend", "dotted", "raise_in_band"]

_PART_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


def dotted(path: Sequence[str | int], what: str) -> str:
    """``("Network", 1, "IEEE8021X", "Mode")`` → ``Network[1].IEEE8021X.Mode``."""
    parts: list[str] = []
    for part in path:
        if isinstance(part, int):
            if not parts or part < 1:
                raise ParameterError(
                    f"{what}: an index must follow a name and be 1 or more: {path!r}",
                    reason="invalid path")
            parts[-1] += f"[{part}]"
        elif _PART_RE.fullmatch(part):
            parts.append(part)
        else:
            raise ParameterError(f"{what}: not a valid xAPI name: {part!r}", reason="invalid name")
    if not parts:
        raise ParameterError(f"{what}: empty path", reason="empty path")
    return ".".join(parts)


def config_key(path: Sequence[str | int]) -> str:
    """The Device Configurations key of a configuration path (reference §3)."""
    return dotted(path, "configuration")


def _leaf(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if value is None:
        return ""
    return str(value)


def _child(data: Any, name: str) -> Any:
    if not isinstance(data, dict):
        return None
    if name in data:
        return data[name]
    lowered = name.lower()
    return next((v for k, v in data.items() if isinstance(k, str) and k.lower() == lowered),
                None)


def _index(data: Any, index: int) -> Any:
    if isinstance(data, list):
        for item in data:
            if isinstance(item, dict) and str(item.get("id", "")) == str(index):
                return item
        return data[index - 1] if 0 < index <= len(data) and not any(
            isinstance(i, dict) and "id" in i for i in data) else None
    if isinstance(data, dict):
        if str(index) in data:
            return data[str(index)]
        return data if index == 1 else None  # a single item given as a structure
    return None


def descend(data: Any, path: Sequence[str | int]) -> Any:
    for part in path:
        data = _index(data, part) if isinstance(part, int) else _child(data, part)
        if data is None:
            return None
    return data


_KEY_PART = re.compile(r"([^.\[\]]+)(?:\[(\d+)\])?")


def config_tree(items: Mapping[str, Any], prefix: str) -> Any:
    """Device Configurations ``items`` under ``prefix`` → the nested tree (leaf: its value)."""
    lowered = prefix.lower()
    tree: dict[str, Any] = {}
    for key, item in items.items():
        value = _config_value(item)
        if key.lower() == lowered:
            return value
        if not key.lower().startswith(lowered + "."):
            continue
        rest = key[len(prefix) + 1:]
        node: Any = tree
        parts = rest.split(".")
        for position, part in enumerate(parts):
            match = _KEY_PART.fullmatch(part)
            if match is None:
                break
            name, index = match.group(1), match.group(2)
            last = position == len(parts) - 1
            if index is not None:
                seq = node.setdefault(name, [])
                if not isinstance(seq, list):
                    break
                while len(seq) < int(index):
                    seq.append({})
                if last:
                    seq[int(index) - 1] = value
                else:
                    node = seq[int(index) - 1]
            elif last:
                node[name] = value
            else:
                node = node.setdefault(name, {})
                if not isinstance(node, dict):
                    break
    return tree or None


def _config_value(item: Any) -> str:
    if not isinstance(item, dict):
        return _leaf(item)
    if "value" in item:
        return _leaf(item["value"])
    sources = item.get("sources") if isinstance(item.get("sources"), dict) else {}
    for source in ("configured", "default"):
        entry = sources.get(source) if isinstance(sources, dict) else None
        if isinstance(entry, dict) and entry.get("value") is not None:
            return _leaf(entry["value"])
    return ""


@dataclass(frozen=True)
class ConfigInfo:
    """What a configuration read said about one key: its type and whether it may be set."""

    kind: str | None  # JSON Schema type of valueSpace: string, integer, number, boolean
    enum: tuple[str, ...]
    editable: bool
    reason: str

    @classmethod
    def of(cls, item: Any) -> ConfigInfo:
        kind: str | None = None
        enum: tuple[str, ...] = ()
        editable, reason = True, ""
        if isinstance(item, dict):
            space = item.get("valueSpace")
            if isinstance(space, dict):
                kind = space.get("type") if isinstance(space.get("type"), str) else None
                if isinstance(space.get("enum"), list):
                    enum = tuple(_leaf(v) for v in space["enum"])
            sources = item.get("sources")
            configured = sources.get("configured") if isinstance(sources, dict) else None
            rules = configured.get("editability") if isinstance(configured, dict) else None
            if isinstance(rules, dict):
                flag = rules.get("isEditable", rules.get("editable", True))
                editable = flag is not False
                reason = str(rules.get("reason") or "")
        return cls(kind, enum, editable, reason)

    def coerce(self, key: str, value: str) -> Any:
        """The JSON value Webex wants for ``value`` (native types: 50, not "50")."""
        if self.enum and value not in self.enum:
            match = next((e for e in self.enum if e.lower() == value.lower()), None)
            if match is None:
                raise ParameterError(
                    f"{key}: {value!r} is not one of {', '.join(self.enum)}", reason="value"
                )
            value = match
        try:
            if self.kind == "integer":
                return int(value)
            if self.kind == "number":
                return float(value)
        except ValueError:
            raise ParameterError(f"{key}: {value!r} is not a {self.kind}") from None
        if self.kind == "boolean":
            if value.lower() in ("true", "on", "1"):
                return True
            if value.lower() in ("false", "off", "0"):
                return False
            raise ParameterError(f"{key}: {value!r} is not true or false")
        return value


def raise_in_band(result: Mapping[str, Any], name: str) -> None:
    """A device error carried in a 200 (not seen, not ruled out: reference "not confirmed" 9)."""
    status = result.get("status", result.get("Status"))
    if not isinstance(status, str) or status.lower() in ("ok", "success"):
        return
    reason = str(result.get("Reason") or result.get("reason") or status)
    if status.lower() == "parametererror":
        raise ParameterError(f"parameter error: {reason}", reason=reason)
    if status.lower() == "error":
        raise CommandError(reason, reason=reason, xpath=name.replace(".", "/"))
