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

The merging lives in :mod:`fleet.inventory_merge` (re-exported here). The new text is
written to a temporary file beside the target, checked with
:func:`fleet.inventory.load_inventory`, and only then renamed over the target.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

from .errors import BadReplyError
from .inventory_merge import (
    DEFAULT_GROUP,
    DEFAULT_TOKEN_REF,
    CloudSettings,
    ImportSummary,
    check_api_verify,
    merge_inventory,
    read_cloud_settings,
    safe_name,
    write_inventory,
)

if TYPE_CHECKING:  # the CLI imports this module for every verb; httpx only when listing
    import httpx

    from .xapi.cloud import WebexApi

__all__ = [
    "DEFAULT_GROUP",
    "DEFAULT_TOKEN_REF",
    "CloudDevice",
    "CloudSettings",
    "DeviceListing",
    "ImportSummary",
    "check_api_verify",
    "fetch_devices",
    "merge_inventory",
    "read_cloud_settings",
    "safe_name",
    "write_inventory",
]

DEFAULT_PAGE_SIZE = 100
_MAX_PAGES = 100_000


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
    from .xapi.webex_api import json_object  # httpx only when listing (see the top)

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
        # not JSON, not an object, or nested deeper than any real reply: a BadReplyError
        items = json_object(response, "the device list").get("items")
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
