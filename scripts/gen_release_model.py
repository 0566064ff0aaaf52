#!/usr/bin/env python3
"""Generate fleet/xapi/releases.json, the RoomOS release model, from Cisco's xAPI schemas.

    python3 scripts/gen_release_model.py SCHEMA_DIR fleet/xapi/releases.json

SCHEMA_DIR holds one JSON file per release, each as published by Cisco (repository
cisco-ce/roomos.cisco.com, folder schemas/) or an unchanged extract of one: an object with
``version``, ``source`` and ``objects`` (each with ``type``, ``path``, ``products`` and
``attributes``). Only the commands, configurations and statuses certfleet and roomsim use are
kept (the prefixes below). The output is compact, sorted and deterministic: the same schemas
always give the same bytes, so a regenerated file diffs only where Cisco's schemas differ.

Output shape (``format`` 1):
    {"format": 1,
     "product_sets": [["bandai", ...], ...],          # each distinct products list, once
     "releases": {"11.24.1": {
         "source": "...",
         "products": <set index>,                      # every product the release knows
         "commands": {"<schema path>": [{"products": <set index>, "multiline": bool,
                                          "params": [<value>, ...]}, ...]},
         "configurations": {"<schema path>": [{"products": <set index>,
                                               "value": <value> | null}, ...]},
         "statuses": {...same as configurations...}}}}
    <value> = {"name", "required", "kind": Literal|String|Integer, "values", "min_length",
               "max_length", "minimum", "maximum", "step", "multiple", "default"}
               (keys whose value is null are left out)
A path has one entry per variant: Cisco's schema sometimes lists the same path twice with
different parameters for different products (e.g. 26.1.1 Network Wifi Configure).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

COMMAND_PREFIXES = (
    "Security Certificates CA ",
    "Security Certificates CSR ",
    "Security Certificates Services ",
    "Network Wifi ",
    "SystemUnit Boot",
)
CONFIGURATION_PREFIXES = (
    "Network[1] IEEE8021X ",
    "NetworkServices HTTP Mode",
    "NetworkServices HTTPS ",
    "NetworkServices Wifi ",
    "Peripherals Security Certificates SyncToPeripherals ",
    "Security CSR ",
    "Security Enrollment ",
)
STATUS_PREFIXES = (
    "Network[n] Ethernet ",
    "Network[n] IEEE8021X ",
    "Network[n] IPv4 ",
    "Network[n] IPv6 ",
    "Network[n] Wifi ",  # but not ScanResult (below)
    "SystemUnit BroadcastName",
    "SystemUnit Hardware HasWifi",
    "SystemUnit Hardware Module ",
    "SystemUnit Hardware UDI",
    "SystemUnit ProductId",
    "SystemUnit ProductPlatform",
    "SystemUnit ProductType",
    "SystemUnit Software ",
    "SystemUnit Uptime",
    "Webex Status",
)
EXCLUDED = ("Network[n] Wifi ScanResult",)
PREFIXES = {
    "Command": ("commands", COMMAND_PREFIXES),
    "Configuration": ("configurations", CONFIGURATION_PREFIXES),
    "Status": ("statuses", STATUS_PREFIXES),
}


def _int(text: Any) -> int | None:
    if text is None or text == "":
        return None
    return int(str(text))


def value_spec(space: dict[str, Any], name: str = "", required: bool = False,
               default: Any = None) -> dict[str, Any]:
    kind = str(space.get("type", "String"))
    multiple = _int(space.get("multiple"))
    base = kind.removesuffix("Array")
    if base not in ("Literal", "String", "Integer"):
        raise ValueError(f"unknown value space type {kind!r} ({name})")
    spec: dict[str, Any] = {
        "name": name,
        "required": bool(required),
        "kind": base,
        "values": [str(v) for v in space["Values"]] if base == "Literal" else None,
        "min_length": _int(space.get("MinLength")) if base == "String" else None,
        "max_length": _int(space.get("MaxLength")) if base == "String" else None,
        "minimum": _int(space.get("Min")) if base == "Integer" else None,
        "maximum": _int(space.get("Max")) if base == "Integer" else None,
        "step": _int(space.get("Step")) if base == "Integer" else None,
        "multiple": multiple if kind.endswith("Array") else None,
        "default": None if default is None else str(default),
    }
    return {key: value for key, value in spec.items() if value is not None}


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def build(schema_dir: Path) -> dict[str, Any]:
    sets: dict[tuple[str, ...], int] = {}
    releases: dict[str, Any] = {}
    loaded = []
    for file in sorted(schema_dir.glob("*.json")):
        data = json.loads(file.read_text(encoding="utf-8"))
        loaded.append((str(data["version"]), data))
    # product sets are numbered in release order, then path order: deterministic
    loaded.sort(key=lambda item: _version_key(item[0]))

    def set_index(products: Any) -> int:
        key = tuple(sorted({str(p) for p in products}))
        return sets.setdefault(key, len(sets))

    for version, data in loaded:
        everything: set[str] = set()
        tables: dict[str, dict[str, list[dict[str, Any]]]] = {
            "commands": {}, "configurations": {}, "statuses": {}}
        objects = sorted(data["objects"], key=lambda o: (o["type"], o["path"],
                                                         sorted(o.get("products", []))))
        for obj in objects:
            everything.update(obj.get("products", []))
        for obj in objects:
            kind = PREFIXES.get(obj["type"])
            if kind is None:
                continue
            table, prefixes = kind
            path = str(obj["path"])
            if not path.startswith(prefixes) or path.startswith(EXCLUDED):
                continue
            attributes = obj.get("attributes", {})
            entry: dict[str, Any] = {"products": set_index(obj.get("products", []))}
            if table == "commands":
                entry["multiline"] = str(attributes.get("multiline", "")).lower() == "true"
                entry["params"] = sorted(
                    (value_spec(p["valuespace"], p["name"], p.get("required", False),
                                p.get("default")) for p in attributes.get("params") or []),
                    key=lambda p: p["name"])
            else:
                space = attributes.get("valuespace")
                entry["value"] = (value_spec(space, default=attributes.get("default"))
                                  if space else None)
            tables[table].setdefault(path, []).append(entry)
        releases[version] = {
            "source": str(data.get("source", "")),
            "products": set_index(everything),
            **{name: dict(sorted(table.items())) for name, table in tables.items()},
        }
    return {
        "format": 1,
        "product_sets": [list(key) for key in sorted(sets, key=sets.__getitem__)],
        "releases": releases,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    schema_dir, out = Path(argv[1]), Path(argv[2])
    if not schema_dir.is_dir() or not any(schema_dir.glob("*.json")):
        print(f"{schema_dir}: not a directory of schema JSON files", file=sys.stderr)
        return 2
    model = build(schema_dir)
    text = json.dumps(model, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    out.write_text(text + "\n", encoding="utf-8")
    print(f"{out}: {len(model['releases'])} releases, {len(text)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
