"""fleet.cloud_import — an inventory from the Webex device list (``inventory import-webex``).

The devices come from ``GET /v1/devices`` page by page, following ``Link: <…>; rel="next"``
until there is none (a next link may lead to an empty page; reference webex-cloud-api.md §2).
Query parameters go with the first request only; next links are followed as given, and only
to the API the token is meant for. ``--tag`` and ``--product`` are sent as the API's filters
and applied again here (tags all present, product a loose substring), so a server that
ignores a filter still gives the right devices. Devices without the ``xapi`` capability
(Webex Calling phones, accessories) are left out: certfleet cannot manage them.

The result is merged into the inventory file, never clobbering it:

* a new file gets ``defaults: {transport: cloud, token: …, api_url: …}``;
* an existing file keeps everything it has — other devices, groups, per-device keys and
  comments (the file is edited round-trip with ruamel.yaml). Its cloud settings stay unless
  ``--token``/``--api-url``/``--api-verify`` are given. If the file's defaults are not cloud
  (a local fleet), the cloud settings go in a group ``webex`` that imported devices join;
* a device already in the file (matched by ``device_id``) keeps its name and keys; its
  cloud tags are added to its tags. New devices are named from their display name, made
  safe for the inventory (``[A-Za-z0-9][A-Za-z0-9._-]*``) and unique, one line each with a
  comment giving product and serial.

The new text is written to a temporary file beside the target, checked with
:func:`fleet.inventory.load_inventory`, and only then renamed over the target.
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
from urllib.parse import urljoin

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from fleet.errors import BadReplyError, InventoryError
from fleet.inventory import DEFAULT_API_URL, load_inventory, parse_verify

if TYPE_CHECKING:  # the CLI imports this module for every verb; httpx only when listing
    import httpx

    from fleet.xapi.cloud import WebexApi

__all__ = [
    "DEFAULT_GROUP",
    "DEFAULT_TOKEN_REF",
    "CloudDevice",
    "CloudSettings",
    "DeviceListing",
    "ImportSummary",
    "fetch_devices",
    "merge_inventory",
    "read_cloud_settings",
    "safe_name",
    "write_inventory",
]

DEFAULT_TOKEN_REF = "env:WEBEX_TOKEN"
DEFAULT_GROUP = "webex"
DEFAULT_PAGE_SIZE = 100
_MAX_PAGES = 100_000
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_TAG_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/+-]*")
_MAX_NAME = 63
_CLOUD_KEYS = ("transport", "token", "api_url", "api_verify", "api_rate_per_minute")
#: Latin letters NFKD does not take apart
_TRANSLITERATE = str.maketrans({"ø": "o", "Ø": "O", "æ": "ae", "Æ": "AE", "ß": "ss", "đ": "d",
                                "Đ": "D", "ł": "l", "Ł": "L", "œ": "oe", "Œ": "OE", "þ": "th",
                                "Þ": "TH", "ð": "d", "Ð": "D", "ı": "i"})


@dataclass(frozen=True)
class CloudDevice:
    """One entry of the Webex device list (the fields certfleet uses)."""

    id: str
    display_name: str
    product: str = ""
    serial: str = ""
    tags: tuple[str, ...] = ()
    connection_status: str = ""
    capabilities: tuple[str, ...] | None = None
    permissions: tuple[str, ...] | None = None

    @classmethod
    def from_item(cls, item: Any) -> CloudDevice | None:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
            return None

        def strings(key: str) -> tuple[str, ...] | None:
            value = item.get(key)
            if not isinstance(value, list):
                return None
            return tuple(str(v) for v in value if isinstance(v, (str, int)))

        return cls(
            id=item["id"],
            display_name=str(item.get("displayName") or ""),
            product=str(item.get("product") or ""),
            serial=str(item.get("serial") or ""),
            tags=strings("tags") or (),
            connection_status=str(item.get("connectionStatus") or ""),
            capabilities=strings("capabilities"),
            permissions=strings("permissions"),
        )

    @property
    def has_xapi(self) -> bool:
        return self.capabilities is None or not self.capabilities or \
            "xapi" in self.capabilities

    @property
    def xapi_permitted(self) -> bool:
        return self.permissions is None or any(p.startswith("xapi") for p in self.permissions)


@dataclass
class DeviceListing:
    devices: list[CloudDevice] = field(default_factory=list)
    pages: int = 0
    seen: int = 0
    no_xapi: int = 0
    filtered: int = 0


def _loose(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def _matches(device: CloudDevice, tags: Sequence[str], product: str | None) -> bool:
    have = {t.lower() for t in device.tags}
    if any(t.lower() not in have for t in tags):
        return False
    return not product or _loose(product) in _loose(device.product)


async def fetch_devices(
    api: WebexApi,
    *,
    tags: Sequence[str] = (),
    product: str | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> DeviceListing:
    """Every device of the list, all pages; raises DeviceError subclasses on API failures."""
    params: list[tuple[str, str | int]] = [("max", page_size)]
    if tags:
        params.append(("tag", ",".join(tags)))
    if product:
        params.append(("product", product))
    listing = DeviceListing()
    url: str | None = api.url("/v1/devices")
    visited: set[str] = set()
    while url is not None:
        if url in visited or listing.pages >= _MAX_PAGES:
            raise BadReplyError(f"the Webex device list loops: {url} was given twice")
        visited.add(url)
        response = await api.send("GET", url, params=params if listing.pages == 0 else None,
                                  idempotent=True)
        api.raise_for_status(response, "the device list")
        listing.pages += 1
        try:
            data = response.json()
        except (ValueError, UnicodeDecodeError):
            raise BadReplyError("Webex answered the device list with a body that is not JSON") \
                from None
        items = data.get("items") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise BadReplyError("the Webex device list has no items")
        for item in items:
            listing.seen += 1
            device = CloudDevice.from_item(item)
            if device is None:
                continue
            if not device.has_xapi:
                listing.no_xapi += 1
            elif not _matches(device, tags, product):
                listing.filtered += 1
            else:
                listing.devices.append(device)
        url = _next_link(response)
        if url is not None and not api.same_origin(url):
            raise BadReplyError(
                f"the device list's next page is at {url}, not at the API {api.base_url}: "
                "refused to send the token there"
            )
    return listing


def _next_link(response: httpx.Response) -> str | None:
    link = response.links.get("next")
    target = link.get("url") if link else None
    if not target:
        return None
    return urljoin(str(response.url), target)


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
    existing_devices = data.get("devices")
    has_devices = isinstance(existing_devices, CommentedMap) and len(existing_devices) > 0
    defaults = data.get("defaults")
    home, group_name = _find_home(data)
    if home is None:
        transport = defaults.get("transport") if isinstance(defaults, CommentedMap) else None
        if not has_devices and transport is None:
            # a new (or device-less) file: the cloud settings are everyone's defaults
            if "defaults" not in data:
                data.insert(0, "defaults", CommentedMap())
            home = _section(data, "defaults", where)
        else:
            # a fleet of other devices: the cloud settings go in a group the imports join
            groups = _section(data, "groups", where)
            group_name = _free_group(groups)
            if group_name not in groups:
                groups[group_name] = CommentedMap()
            home = groups[group_name]
    if group_name is not None:
        summary.settings_in = f"groups.{group_name}"
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
            if name in touched:
                continue
            entry = section[name]
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
            summary.updated.append(name)
            touched.add(name)
            continue
        fallback = f"webex-{device.serial or device.id[-8:]}"
        name = _unique(safe_name(device.display_name, fallback), taken)
        taken.add(name)
        touched.add(name)
        by_id[device.id] = name
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

