"""fleet.inventory_merge — Webex devices merged into an inventory file, round-trip.

The YAML half of ``inventory import-webex`` (:mod:`fleet.cloud_import` lists the devices and
re-exports what is here): device names made safe and unique, the cloud settings placed in the
file's defaults or in a group, existing devices and comments kept, and the atomic, checked
write. See :mod:`fleet.cloud_import` for the rules.
"""

from __future__ import annotations

import io
import os
import re
import stat
import tempfile
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from .errors import InventoryError
from .inventory import DEFAULT_API_URL, load_inventory, parse_verify

if TYPE_CHECKING:
    from .cloud_import import CloudDevice

__all__ = [
    "DEFAULT_GROUP",
    "DEFAULT_TOKEN_REF",
    "CloudSettings",
    "ImportSummary",
    "check_api_verify",
    "merge_inventory",
    "read_cloud_settings",
    "safe_name",
    "write_inventory",
]

DEFAULT_TOKEN_REF = "env:WEBEX_TOKEN"
DEFAULT_GROUP = "webex"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_TAG_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/+-]*")
_MAX_NAME = 63
_CLOUD_KEYS = ("transport", "token", "api_url", "api_verify", "api_rate_per_minute")
#: Latin letters NFKD does not take apart
_TRANSLITERATE = str.maketrans({"ø": "o", "Ø": "O", "æ": "ae", "Æ": "AE", "ß": "ss", "đ": "d",
                                "Đ": "D", "ł": "l", "Ł": "L", "œ": "oe", "Œ": "OE", "þ": "th",
                                "Þ": "TH", "ð": "d", "Ð": "D", "ı": "i"})


# --------------------------------------------------------------------------- naming


def safe_name(display_name: str, fallback: str = "device") -> str:
    """``"Oslo – Board 85 (4th floor)"`` → ``"oslo-board-85-4th-floor"``."""
    text = unicodedata.normalize("NFKD", display_name.translate(_TRANSLITERATE))
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    text = re.sub(r"[^a-z0-9._-]+", "-", text)
    text = re.sub(r"-{2,}", "-", text)
    text = re.sub(r"^[^a-z0-9]+", "", text)[:_MAX_NAME].rstrip("-._")
    if not text or not _NAME_RE.fullmatch(text):
        text = re.sub(r"[^a-z0-9-]+", "-", fallback.lower()).strip("-") or "device"
    return text


def _unique(base: str, taken: set[str]) -> str:
    if base not in taken:
        return base
    number = 2
    while True:
        suffix = f"-{number}"
        candidate = base[: _MAX_NAME - len(suffix)] + suffix
        if candidate not in taken:
            return candidate
        number += 1


def _safe_tags(tags: Iterable[str]) -> list[str]:
    out: list[str] = []
    for tag in tags:
        text = re.sub(r"[\s,]+", "-", tag.strip())
        text = re.sub(r"[^A-Za-z0-9._:/+-]", "", text)
        text = re.sub(r"^[^A-Za-z0-9]+", "", text)
        if text and _TAG_RE.fullmatch(text) and text not in out:
            out.append(text)
    return out


# ---------------------------------------------------------------------------- merging


@dataclass(frozen=True)
class CloudSettings:
    """The cloud keys to write; ``None`` keeps what the file has (or the default)."""

    token: str | None = None
    api_url: str | None = None
    api_verify: str | None = None
    api_rate_per_minute: float | None = None


@dataclass
class ImportSummary:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    kept: int = 0
    settings_in: str = "defaults"  # or "groups.webex"
    pages: int = 0
    no_xapi: int = 0
    without_permission: int = 0
    skipped_ids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": len(self.added),
            "updated": len(self.updated),
            "kept": self.kept,
            "pages": self.pages,
            "skipped_no_xapi": self.no_xapi,
            "without_xapi_permission": self.without_permission,
            "cloud_settings_in": self.settings_in,
            "added_devices": self.added,
            "updated_devices": self.updated,
        }


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096
    yaml.preserve_quotes = True
    return yaml


def _flow(items: Sequence[str]) -> CommentedSeq:
    seq = CommentedSeq(list(items))
    seq.fa.set_flow_style()
    return seq


def _load(text: str | None, where: str) -> CommentedMap:
    if not text or not text.strip():
        return CommentedMap()
    try:
        data = _yaml().load(text)
    except YAMLError as exc:
        raise InventoryError(f"cannot merge into it, it is not valid YAML: {exc}",
                             file=where) from None
    if data is None:
        return CommentedMap()
    if not isinstance(data, CommentedMap):
        raise InventoryError("cannot merge into it: the top level is not a mapping", file=where)
    return data


def _section(data: CommentedMap, key: str, where: str) -> CommentedMap:
    value = data.get(key)
    if value is None:
        value = CommentedMap()
        keys = list(data)
        if key in data:
            data[key] = value
        elif key == "groups" and "devices" in keys:
            data.insert(keys.index("devices"), key, value)  # groups before the devices
        else:
            data[key] = value
    if not isinstance(value, CommentedMap):
        raise InventoryError(f"cannot merge into it: {key} is not a mapping", file=where,
                             key=key)
    if value.fa.flow_style():
        value.fa.set_block_style()
    return value


def _whole(value: float | None) -> float | int | None:
    """5600.0 is written as 5600."""
    return int(value) if value is not None and float(value).is_integer() else value


def read_cloud_settings(text: str | None) -> dict[str, str]:
    """The cloud keys an existing inventory gives imported devices (its cloud home)."""
    home, _ = _find_home(_load(text, "inventory"))
    if home is None:
        return {}
    return {k: str(home[k]) for k in _CLOUD_KEYS
            if isinstance(home.get(k), str | int | float) and not isinstance(home.get(k), bool)}


def _is_cloud(node: Any) -> bool:
    return isinstance(node, CommentedMap) and node.get("transport") == "cloud"


def _find_home(data: CommentedMap) -> tuple[CommentedMap | None, str | None]:
    """Where the file keeps its cloud settings: (the mapping, its group name or None)."""
    if _is_cloud(data.get("defaults")):
        return data["defaults"], None
    groups = data.get("groups")
    if isinstance(groups, CommentedMap):
        for name, group in groups.items():
            if str(name).startswith(DEFAULT_GROUP) and _is_cloud(group):
                return group, str(name)
    return None, None


def _free_group(groups: CommentedMap) -> str:
    name, number = DEFAULT_GROUP, 2
    while name in groups and not _is_cloud(groups[name]):
        name, number = f"{DEFAULT_GROUP}-{number}", number + 1
    return name


def merge_inventory(
    text: str | None,
    devices: Sequence[CloudDevice],
    settings: CloudSettings,
    *,
    where: str = "inventory",
) -> tuple[str, ImportSummary]:
    """The inventory ``text`` (None: a new file) with ``devices`` merged in."""
    data = _load(text, where)
    summary = ImportSummary()
    home, group_name = _cloud_home(data, where)
    if group_name is not None:
        summary.settings_in = f"groups.{group_name}"
    _write_settings(home, settings)
    section = _section(data, "devices", where)
    by_id: dict[str, str] = {}
    for name, entry in section.items():
        if isinstance(entry, CommentedMap) and isinstance(entry.get("device_id"), str):
            by_id.setdefault(entry["device_id"], str(name))
    taken = {str(name) for name in section}
    touched: set[str] = set()
    for device in devices:
        if any(c.isspace() for c in device.id):
            summary.skipped_ids.append(device.id)
            continue
        if not device.xapi_permitted:
            summary.without_permission += 1
        tags = _safe_tags(device.tags)
        name = by_id.get(device.id)
        if name is not None:
            if name not in touched:
                _update_entry(section[name], tags, group_name)
                summary.updated.append(name)
                touched.add(name)
            continue
        fallback = f"webex-{device.serial or device.id[-8:]}"
        name = _unique(safe_name(device.display_name, fallback), taken)
        taken.add(name)
        touched.add(name)
        by_id[device.id] = name
        _add_entry(section, name, device, tags, group_name)
        summary.added.append(name)
    summary.kept = len(section) - len(touched)
    if not text or not text.strip():
        data.yaml_set_start_comment(
            "certfleet inventory: devices from the Webex device list "
            "(certfleet inventory import-webex).\nRun the import again to add new devices; "
            "hand-written keys and devices are kept."
        )
    out = io.StringIO()
    _yaml().dump(data, out)
    return out.getvalue(), summary


def _cloud_home(data: CommentedMap, where: str) -> tuple[CommentedMap, str | None]:
    """Where the cloud settings go: the file's cloud home if it has one; else the defaults of
    a new (or device-less) file; else a group the imported devices join."""
    home, group_name = _find_home(data)
    if home is not None:
        return home, group_name
    defaults = data.get("defaults")
    existing_devices = data.get("devices")
    has_devices = isinstance(existing_devices, CommentedMap) and len(existing_devices) > 0
    transport = defaults.get("transport") if isinstance(defaults, CommentedMap) else None
    if not has_devices and transport is None:
        if "defaults" not in data:
            data.insert(0, "defaults", CommentedMap())
        return _section(data, "defaults", where), None
    groups = _section(data, "groups", where)
    group_name = _free_group(groups)
    if group_name not in groups:
        groups[group_name] = CommentedMap()
    return groups[group_name], group_name


def _write_settings(home: CommentedMap, settings: CloudSettings) -> None:
    """The given settings over the home's; a missing token or API URL gets the default."""
    home["transport"] = "cloud"
    for key, given, default in (("token", settings.token, DEFAULT_TOKEN_REF),
                                ("api_url", settings.api_url, DEFAULT_API_URL),
                                ("api_verify", settings.api_verify, None),
                                ("api_rate_per_minute", _whole(settings.api_rate_per_minute),
                                 None)):
        if given is not None:
            home[key] = given
        elif key not in home and default is not None:
            home[key] = default


def _update_entry(entry: CommentedMap, tags: list[str], group_name: str | None) -> None:
    """A device already in the file keeps its keys; it gains the cloud tags and the group."""
    current = entry.get("tags")
    if tags:
        if isinstance(current, list):
            for tag in tags:
                if tag not in current:
                    current.append(tag)
        elif current is None:
            entry["tags"] = _flow(tags)
    if group_name is not None and "transport" not in entry:
        joined = entry.get("groups")
        if isinstance(joined, list) and group_name not in joined:
            joined.append(group_name)
        elif joined is None:
            entry["groups"] = _flow([group_name])


def _add_entry(section: CommentedMap, name: str, device: CloudDevice, tags: list[str],
               group_name: str | None) -> None:
    """A new device: one flow-style line, commented with its product, serial and Webex name."""
    entry = CommentedMap([("device_id", device.id)])
    if tags:
        entry["tags"] = _flow(tags)
    if group_name is not None:
        entry["groups"] = _flow([group_name])
    entry.fa.set_flow_style()
    section[name] = entry
    note = ", ".join(p for p in (device.product,
                                 f"serial {device.serial}" if device.serial else "",
                                 f"Webex: {device.display_name}"
                                 if device.display_name and device.display_name != name
                                 else "") if p)
    if note:
        section.yaml_add_eol_comment(note.replace("\n", " "), name)


def write_inventory(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, after checking it loads as an inventory.

    The text goes to a temporary file beside ``path`` (so relative ``ca:`` paths resolve the
    same way), is loaded with :func:`load_inventory`, fsynced and renamed over ``path``; on any
    problem the temporary file is removed and ``path`` is as it was.
    """
    folder = path.parent if str(path.parent) else Path(".")
    folder.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        try:
            load_inventory(tmp)
        except InventoryError as exc:
            problems = "; ".join(p.reason if p.key is None else f"{p.key}: {p.reason}"
                                 for p in exc.problems[:5])
            raise InventoryError(
                f"the merged inventory would not load, so it was not written: {problems}",
                file=str(path), problems=None,
            ) from None
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def check_api_verify(text: str | None, base_dir: Path) -> None:
    """An ``--api-verify`` value must be one the inventory accepts (InputError if not)."""
    if text is not None:
        parse_verify(text, base_dir=base_dir)

