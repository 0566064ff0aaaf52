"""fleet.webex_import — add the Webex devices to an inventory file: settings, fetch, merge.

The cloud settings written to the file come from what was given, else what the file already
has, else the defaults (token ``env:WEBEX_TOKEN``-style reference, the public API, ``system``
trust, the default rate); only what was given is written over the file's. Nothing is written
when the token does not resolve, the URL is not http(s), or listing the devices fails.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ._loop import run as run_loop
from .cloud_import import (
    DEFAULT_PAGE_SIZE,
    DEFAULT_TOKEN_REF,
    CloudSettings,
    DeviceListing,
    ImportSummary,
    fetch_devices,
    merge_inventory,
    read_cloud_settings,
    write_inventory,
)
from .errors import InputError
from .inventory import DEFAULT_API_URL, MAX_API_RATE_PER_MINUTE, parse_verify
from .secrets import Secret, parse_secret_ref

__all__ = ["ImportRequest", "Imported", "import_webex"]


@dataclass(frozen=True)
class ImportRequest:
    """What ``certfleet inventory import-webex`` was asked (None: the file's, else default)."""

    path: Path
    tags: tuple[str, ...] = ()
    product: str | None = None
    token: str | None = None
    api_url: str | None = None
    api_verify: str | None = None
    api_rate: float | None = None
    page_size: int = DEFAULT_PAGE_SIZE
    dry_run: bool = False


@dataclass
class Imported:
    path: Path
    written: bool
    summary: ImportSummary
    listing: DeviceListing = field(repr=False)


def _number(value: str | None) -> float | None:
    """The file's api_rate_per_minute if it is a usable number (else the default applies;
    `inventory check` reports a bad one)."""
    try:
        rate = float(value) if value is not None else None
    except ValueError:
        return None
    return rate if rate is not None and 0 < rate <= MAX_API_RATE_PER_MINUTE else None


async def _fetch(api_url: str, verify_text: str, base_dir: Path, token: Secret,
                 request: ImportRequest, rate: float | None) -> DeviceListing:
    from .xapi.cloud import CloudClients  # httpx: loaded only for this job

    clients = CloudClients()
    try:
        api = clients.api(api_url, parse_verify(verify_text, base_dir=base_dir), token,
                          rate_per_minute=rate)
        return await fetch_devices(api, tags=list(request.tags), product=request.product,
                                   page_size=request.page_size)
    finally:
        await clients.aclose()


def import_webex(request: ImportRequest) -> Imported:
    """List the Webex devices and merge them into ``request.path`` (written unless a dry
    run). InputError for bad settings, DeviceError when listing fails; nothing written then."""
    path = request.path
    text = path.read_text(encoding="utf-8-sig") if path.exists() else None
    base_dir = path.parent.absolute()
    existing = read_cloud_settings(text)
    token_ref = request.token or existing.get("token") or DEFAULT_TOKEN_REF
    secret = parse_secret_ref(token_ref).resolve()  # SecretError: exit 2, nothing written
    url = (request.api_url or existing.get("api_url") or DEFAULT_API_URL).strip().rstrip("/")
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
        raise InputError(f"--api-url {url!r} must be an http(s) URL such as {DEFAULT_API_URL}")
    verify_given: str | None = None
    if request.api_verify is not None:
        # a path given here is relative to where the command runs: written absolute
        verify_given = str(parse_verify(request.api_verify, base_dir=Path.cwd()))
    verify_text = verify_given or existing.get("api_verify") or "system"
    rate = request.api_rate or _number(existing.get("api_rate_per_minute"))
    listing = run_loop(_fetch(url, verify_text, base_dir, secret, request, rate))
    merged, summary = merge_inventory(
        text, listing.devices,
        CloudSettings(token=request.token, api_url=request.api_url and url,
                      api_verify=verify_given, api_rate_per_minute=request.api_rate),
        where=str(path),
    )
    summary.pages = listing.pages
    summary.no_xapi = listing.no_xapi
    if not request.dry_run:
        write_inventory(path, merged)
    return Imported(path, not request.dry_run, summary, listing)
