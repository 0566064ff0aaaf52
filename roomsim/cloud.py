"""The simulated Webex cloud REST API (`SimFleet(cloud=True)`): one HTTPS listener on
127.0.0.1 serving every simulated device the way `https://webexapis.com/v1` does
(reference webex-cloud-api.md; section numbers below are its).

Endpoints: `GET /v1/devices` (filters, `max`/`start`, `Link: <…>; rel="next"`),
`GET /v1/devices/{id}`, `POST /v1/xapi/command/{Command.Name}`, `GET /v1/xapi/status`,
`GET /v1/xapi/schema`, `GET`/`PATCH /v1/deviceConfigurations`. Commands run through the
fleet's command registry on the same device objects as the local API, so a CA added here is
in the local `CA Show` at once.

Every request: forced 429s first (`force_429`), then the bearer token (401), then the
per-token sliding window of `rate_per_minute` requests per 60 s (429 with `Retry-After`),
then the endpoint. Requests refused with 429 are not counted in the window. Every answer
carries a `Trackingid` header; errors carry `{"message", "errors": [{"description"}],
"trackingId"}`.

Choices where the reference found nothing: a command or status call to a device that is
not connected answers `OFFLINE_STATUS` (409) "Device is offline"; configuration PATCHes to
such a device are accepted and reach the device when it is connected again (§3), while the
fleet runs; device command failures (ParameterError and Error) answer 400 with the device's
Reason as the message; no command is refused by default (§1.5 lists none), and
`disallowed` patterns refuse commands with the observed 400 `[Command 'X' not
supported]`."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import hmac
import json
import logging
import math
import os
import re
import secrets
import ssl
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import hdrs, web
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from . import cloud_api, jsonrpc
from .certs import cert_pem, issue_server_cert, key_pem
from .cloud_api import CloudError, JsonObject
from .commands import CommandContext, CommandRegistry, execute
from .configuration import SCHEMA, accepts
from .device import LOOPBACK, SimDevice
from .server import DeviceServer
from .state import PRIVATE, StateDir, write_atomic

log = logging.getLogger(__name__)

TOKEN_FILE = "cloud-token"
PORT_FILE = "cloud.json"
TLS_NAME = "roomsim-cloud"
OFFLINE_STATUS = 409
MAX_BODY = 8 * 1024 * 1024
WINDOW_SECONDS = 60.0
UNAUTHORIZED = "The request requires a valid access token set in the Authorization request header."
NOT_FOUND = "The requested resource could not be found."
HTML_429 = (
    "<html><head><title>429 Too Many Requests</title></head><body>"
    "<h1>Too Many Requests</h1><p>Please retry later.</p></body></html>\n"
)
_CREATED = dt.datetime(2025, 1, 15, 8, 0, tzinfo=dt.UTC)

_Handler = Callable[[web.Request, Mapping[str, str]], Awaitable[web.StreamResponse]]


def ensure_token(state: StateDir) -> str:
    """The bearer token in `<state>/cloud-token` (mode 0600), created on first use."""
    path = state.root / TOKEN_FILE
    if path.exists():
        token = path.read_text(encoding="utf-8").strip()
        if token:
            return token
    token = secrets.token_urlsafe(48)
    write_atomic(path, (token + "\n").encode("utf-8"), PRIVATE)
    return token


def _iso(when: dt.datetime) -> str:
    when = when.astimezone(dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


class SlidingWindow:
    """At most `limit` requests per `window` seconds per key."""

    def __init__(
        self,
        limit: int,
        window: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._seen: dict[str, collections.deque[float]] = {}

    def admit(self, key: str) -> float | None:
        """Count a request and return None, or refuse it: the seconds until one is allowed."""
        now = self._clock()
        seen = self._seen.setdefault(key, collections.deque())
        while seen and seen[0] <= now - self.window:
            seen.popleft()
        if len(seen) >= self.limit:
            return seen[0] + self.window - now
        seen.append(now)
        return None


@dataclass
class _Forced429:
    remaining: int = 0
    retry_after: str | None = None
    html: bool = False


@dataclass(frozen=True)
class _Static:
    """What never changes about a device in the cloud's view."""

    device_id: str
    workspace_id: str
    mac: str
    software: str
    created: str


class CloudServer:
    """Serves the cloud API for `devices` on 127.0.0.1; `url` once started."""

    def __init__(
        self,
        state: StateDir,
        devices: Mapping[str, SimDevice],
        servers: Mapping[str, DeviceServer],
        registry: CommandRegistry,
        *,
        ca_cert: x509.Certificate,
        ca_key: CertificateIssuerPrivateKeyTypes,
        rate_per_minute: int = 300,
        disallowed: Iterable[str] = (),
    ) -> None:
        if rate_per_minute < 1:
            raise ValueError("cloud_rate_per_minute must be at least 1")
        self.state = state
        self.devices = devices
        self.servers = servers
        self.registry = registry
        self.window = SlidingWindow(rate_per_minute)
        self.disallowed: list[str] = list(disallowed)
        self.offline_status = OFFLINE_STATUS
        self.token = ""
        #: more bearer tokens this API accepts (`add_token`), each with its own rate window
        self.extra_tokens: list[str] = []
        #: answers so far: (token number, User-Agent, HTTP status) -> count (`traffic`)
        self._traffic: collections.Counter[tuple[int, str, int]] = collections.Counter()
        self.port = 0
        self._ca_cert, self._ca_key = ca_cert, ca_key
        self._runner: web.AppRunner | None = None
        self._forced = _Forced429()
        self._offline: dict[str, bool] = {}
        self._pending: dict[str, dict[str, str | None]] = {}
        self._boots: dict[str, asyncio.Task[None]] = {}
        self._last_seen: dict[str, dt.datetime] = {}
        self._static: dict[str, _Static] = {}
        self._names_by_id: dict[str, str] = {}
        self._routes: list[tuple[re.Pattern[str], dict[str, _Handler]]] = [
            (re.compile(r"/v1/devices"), {"GET": self._list_devices}),
            (re.compile(r"/v1/devices/(?P<id>[^/]+)"), {"GET": self._get_device}),
            (re.compile(r"/v1/xapi/command/(?P<command>[^/]+)"), {"POST": self._command}),
            (re.compile(r"/v1/xapi/status"), {"GET": self._status}),
            (re.compile(r"/v1/xapi/schema"), {"GET": self._schema}),
            (
                re.compile(r"/v1/deviceConfigurations"),
                {"GET": self._get_config, "PATCH": self._patch_config},
            ),
        ]

    @property
    def url(self) -> str:
        """The base URL; paths are `/v1/...` below it."""
        if self._runner is None:
            raise RuntimeError("the cloud API is not running")
        return f"https://{LOOPBACK}:{self.port}"

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._runner is not None:
            return
        self.token = ensure_token(self.state)
        for name, device in self.devices.items():
            self._static[name] = self._describe(name, device)
            self._names_by_id[self._static[name].device_id] = name
        context = self._tls_context()
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_route("*", "/{path:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.25)
        await runner.setup()
        wanted = self._saved_port()
        try:
            try:
                await web.TCPSite(runner, LOOPBACK, wanted, ssl_context=context).start()
            except OSError as exc:
                if wanted == 0:
                    raise
                log.warning("cloud API: port %d unavailable (%s); using a new port", wanted, exc)
                await web.TCPSite(runner, LOOPBACK, 0, ssl_context=context).start()
        except BaseException:
            await runner.cleanup()
            raise
        self.port = int(runner.addresses[0][1])
        if self.port != wanted:
            write_atomic(self.state.root / PORT_FILE, json.dumps({"port": self.port}).encode())
        self._runner = runner

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def _saved_port(self) -> int:
        try:
            port = json.loads((self.state.root / PORT_FILE).read_text(encoding="utf-8"))["port"]
        except (OSError, ValueError, KeyError, TypeError):
            return 0
        return port if isinstance(port, int) and 0 < port < 65536 else 0

    def _tls_context(self) -> ssl.SSLContext:
        """A server certificate from the sim CA for IP 127.0.0.1 and DNS localhost."""
        cert, key = issue_server_cert(self._ca_cert, self._ca_key, TLS_NAME)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        fd, path = tempfile.mkstemp(prefix=".tls-cloud-", suffix=".pem", dir=self.state.root)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(cert_pem(cert) + key_pem(key))
            context.load_cert_chain(path)
        finally:
            os.unlink(path)
        return context

    @staticmethod
    def _describe(name: str, device: SimDevice) -> _Static:
        status = device.getxml("Status")
        return _Static(
            device_id=cloud_api.device_id_for(name),
            workspace_id=cloud_api.webex_id("PLACE", name),
            mac=(status.findtext("Network/Ethernet/MacAddress") or "").upper(),
            software=status.findtext("SystemUnit/Software/DisplayName") or "",
            created=_iso(_CREATED + dt.timedelta(minutes=device.index)),
        )

    # ------------------------------------------------------------------ controls

    def device_id(self, name: str) -> str:
        if name not in self.devices:
            raise KeyError(f"no simulated device named {name!r}")
        return cloud_api.device_id_for(name)

    def set_offline(self, name: str, offline: bool) -> None:
        """Disconnect a device from the cloud (or reconnect it: pending configs apply)."""
        self.device_id(name)
        self._offline[name] = offline
        self.connection_status(name)

    def force_429(self, count: int, retry_after: str | None = "2", *, html: bool = False) -> None:
        """The next `count` requests answer 429 with this `Retry-After` value as given
        (None: no header; malformed values are sent as they are) and a JSON error body,
        or an HTML one."""
        if count < 0:
            raise ValueError("count must be >= 0")
        self._forced = _Forced429(count, retry_after, html)

    def add_token(self) -> str:
        """One more bearer token the API accepts, limited on its own like another user's
        (benchmarks: N shards with N tokens). It is number 2, 3, ... in `traffic`."""
        token = secrets.token_urlsafe(48)
        self.extra_tokens.append(token)
        return token

    def traffic(self) -> list[dict[str, Any]]:
        """Every answer so far, counted per token (1 = `cloud-token`, 2... = `add_token`'s,
        0 = none or unknown), User-Agent and status: what a benchmark reads to know how
        many requests a client made and how many 429s it caused."""
        return [
            {"token": number, "agent": agent, "status": status, "count": count}
            for (number, agent, status), count in sorted(self._traffic.items())
        ]

    def _token_number(self, token: str | None) -> int:
        if token is not None:
            for number, known in enumerate([self.token, *self.extra_tokens], start=1):
                if hmac.compare_digest(token.encode(), known.encode()):
                    return number
        return 0

    def connection_status(self, name: str) -> str:
        """`disconnected` while set offline, while the device has the `offline` fault or a
        reboot asked through the cloud runs; else `connected` (configuration changes
        waiting for the device are applied then)."""
        device = self.devices[name]
        boot = self._boots.get(name)
        if self._offline.get(name) or device.faults.offline or (boot and not boot.done()):
            return "disconnected"
        self._last_seen[name] = dt.datetime.now(dt.UTC)
        pending = self._pending.pop(name, None)
        if pending and cloud_api.apply_changes(device.config, pending):
            device.save()
        return "connected"

    # ------------------------------------------------------------------ pipeline

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        tracking = f"ROOMSIM_{uuid.uuid4()}"
        try:
            response = await self._pipeline(request, tracking)
        except CloudError as exc:
            response = _error(exc.status, exc.message, tracking, exc.headers)
        except web.HTTPException as exc:  # from aiohttp itself, e.g. 413 for a huge body
            response = _error(exc.status, exc.reason, tracking)
        response.headers["Trackingid"] = tracking
        agent = request.headers.get(hdrs.USER_AGENT, "")[:80]
        self._traffic[(self._token_number(_bearer(request)), agent, response.status)] += 1
        return response

    async def _pipeline(self, request: web.Request, tracking: str) -> web.StreamResponse:
        forced = self._forced
        if forced.remaining > 0:
            forced.remaining -= 1
            headers = {} if forced.retry_after is None else {"Retry-After": forced.retry_after}
            if forced.html:
                return web.Response(
                    status=429, text=HTML_429, content_type="text/html", headers=headers
                )
            return _error(429, "Too Many Requests", tracking, headers)
        token = _bearer(request)
        if token is None or not self._token_number(token):
            raise CloudError(401, UNAUTHORIZED)
        wait = self.window.admit(token)
        if wait is not None:
            seconds = max(1, math.ceil(wait))
            raise CloudError(
                429,
                f"Too many requests: at most {self.window.limit} per minute; "
                f"retry after {seconds} seconds",
                {"Retry-After": str(seconds)},
            )
        path = request.path.rstrip("/") or "/"
        for pattern, methods in self._routes:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            handler = methods.get(request.method)
            if handler is None:
                raise CloudError(405, f"Method {request.method} is not allowed on {path}")
            return await handler(request, match.groupdict())
        raise CloudError(404, NOT_FOUND)

    # ------------------------------------------------------------------ helpers

    def _device_name(self, device_id: Any) -> str:
        if not isinstance(device_id, str) or not device_id.strip():
            raise CloudError(400, "deviceId is required")
        name = self._names_by_id.get(device_id.strip())
        if name is None:
            raise CloudError(404, NOT_FOUND)
        return name

    def _require_connected(self, name: str) -> None:
        if self.connection_status(name) != "connected":
            raise CloudError(self.offline_status, "Device is offline")

    def _device_item(self, name: str) -> JsonObject:
        device, static = self.devices[name], self._static[name]
        status = self.connection_status(name)
        last_seen = self._last_seen.get(name)
        item: JsonObject = {
            "id": static.device_id,
            "displayName": name,
            "workspaceId": static.workspace_id,
            "orgId": cloud_api.ORG_ID,
            "locationId": cloud_api.LOCATION_ID,
            "capabilities": ["xapi"],
            "permissions": ["xapi:all"],
            "connectionStatus": status,
            "product": device.product.product_id,
            "type": "roomdesk",
            "tags": [device.group, device.product.tag],
            "ip": device.host,
            "activeInterface": "wired",
            "mac": static.mac,
            "primarySipUrl": f"{name}@roomsim.rooms.webex.com",
            "sipUrls": [f"{name}@roomsim.rooms.webex.com"],
            "serial": device.serial,
            "software": static.software,
            "upgradeChannel": "Stable",
            "errorCodes": [],
            "created": static.created,
            "firstSeen": static.created,
            "managedBy": "CISCO",
            "devicePlatform": "cisco",
            "plannedMaintenance": {"mode": "off"},
        }
        if last_seen is not None:
            item["lastSeen"] = _iso(last_seen)
        return item

    def _config_view(self, name: str) -> dict[str, str]:
        """The configuration as the cloud has it: the device's, plus changes waiting."""
        view = dict(self.devices[name].config)
        cloud_api.apply_changes(view, self._pending.get(name, {}))
        return view

    # ------------------------------------------------------------------ endpoints

    async def _list_devices(self, request: web.Request, _: Mapping[str, str]) -> web.Response:
        query = _query(request)
        limit = min(_int_param(query, "max", cloud_api.PAGE_DEFAULT, 1), cloud_api.PAGE_MAX)
        start = _int_param(query, "start", 0, 0)
        matched = [
            item
            for item in (self._device_item(name) for name in self.devices)
            if cloud_api.matches_filters(item, query)
        ]
        page = matched[start : start + limit]
        headers: dict[str, str] = {}
        if len(page) == limit:  # a full page: there may be more (§2: maybe an empty page)
            keep = [(k, v) for k, v in request.query.items() if k not in ("max", "start")]
            following = request.url.with_query([*keep, ("max", limit), ("start", start + limit)])
            headers["Link"] = f'<{following}>; rel="next"'
        return web.json_response({"items": page}, headers=headers)

    async def _get_device(self, request: web.Request, match: Mapping[str, str]) -> web.Response:
        return web.json_response(self._device_item(self._device_name(match["id"])))

    async def _command(self, request: web.Request, match: Mapping[str, str]) -> web.Response:
        payload = await _json_body(request)
        if not isinstance(payload, dict):
            raise CloudError(400, "The request body must be a JSON object")
        device_id = payload.get("deviceId")
        name = self._device_name(device_id)
        device = self.devices[name]
        command = match["command"]
        arguments = payload.get("arguments")
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise CloudError(400, "arguments must be a JSON object")
        body = payload.get("body")
        if isinstance(body, dict | list):
            body = json.dumps(body)
        elif body is not None and not isinstance(body, str):
            raise CloudError(400, "body must be a string or a JSON object")
        known = cloud_api.find_command(self.registry, command)
        if known is not None and cloud_api.is_disallowed(known, self.disallowed):
            raise CloudError(400, f"[Command '{command}' not supported]")
        spec = self.registry.for_device(known.path, device) if known is not None else None
        if spec is None:  # unknown, or the device's release or product lacks it
            given, _ = jsonrpc.logged_params(arguments)
            path = known.path if known is not None else tuple(command.split("."))
            device.requests.command("cloud", path, given, body is not None)
            raise CloudError(400, f"[Command '{command}' not supported]")
        document = cloud_api.command_document(spec, arguments, body)
        self._require_connected(name)
        device = self.devices[name]
        if device.faults.latency > 0:
            await asyncio.sleep(device.faults.latency)
        context = CommandContext(device, via="cloud")
        reply = await execute(self.registry, context, document)
        result = reply[0] if len(reply) else ET.Element("Result", status="Error")
        if result.get("status") != "OK":
            raise CloudError(400, result.findtext("Reason") or "Command failed")
        if context.boot_action is not None:
            self._boots[name] = self.servers[name].boot(context.boot_action)
        answer = {"deviceId": device_id, "result": cloud_api.command_result(result)}
        return web.json_response(answer)

    async def _status(self, request: web.Request, _: Mapping[str, str]) -> web.Response:
        query = _query(request)
        device_id = _single(query, "deviceId")
        name = self._device_name(device_id)
        names = [n.strip() for raw in query.get("name", []) for n in raw.split(",") if n.strip()]
        if not names:
            raise CloudError(400, "name is required: one or more status expressions")
        if len(names) > cloud_api.MAX_STATUS_NAMES:
            raise CloudError(
                400, f"At most {cloud_api.MAX_STATUS_NAMES} status expressions per request"
            )
        self._require_connected(name)
        device = self.devices[name]
        if device.faults.latency > 0:
            await asyncio.sleep(device.faults.latency)
        result = cloud_api.select_status(device.getxml("Status"), names)
        return web.json_response({"deviceId": device_id, "result": result})

    async def _schema(self, request: web.Request, _: Mapping[str, str]) -> web.Response:
        """§1.4; the schema is the one the device uploaded, so it answers while offline."""
        query = _query(request)
        ids = [i.strip() for raw in query.get("deviceId", []) for i in raw.split(",") if i.strip()]
        if not ids:
            raise CloudError(400, "deviceId is required")
        if len(ids) > cloud_api.MAX_SCHEMA_DEVICES:
            raise CloudError(400, f"At most {cloud_api.MAX_SCHEMA_DEVICES} deviceId values")
        commands, statuses = query.get("command"), query.get("status")
        both = commands is None and statuses is None
        entries = []
        for device_id in ids:
            entry: JsonObject = {"deviceId": device_id}
            device = self.devices[self._device_name(device_id)]
            if both or commands is not None:
                entry["commands"] = cloud_api.command_schemas(
                    self.registry, commands, self.disallowed,
                    lambda path, device=device: self.registry.for_device(path, device),
                )
            if both or statuses is not None:
                entry["status"] = cloud_api.status_schemas(device.getxml("Status"), statuses)
            entries.append(entry)
        return web.json_response(entries)

    async def _get_config(self, request: web.Request, _: Mapping[str, str]) -> web.Response:
        """§3; configurations are read from the cloud's copy, so this works offline too."""
        query = _query(request)
        device_id = _single(query, "deviceId")
        name = self._device_name(device_id)
        keys = query.get("key")
        items = cloud_api.config_items(
            self._config_view(name), keys, self.devices[name].configuration_node)
        return web.json_response({"deviceId": device_id, "items": items})

    async def _patch_config(self, request: web.Request, _: Mapping[str, str]) -> web.Response:
        query = _query(request)
        device_id = _single(query, "deviceId")
        name = self._device_name(device_id)
        if request.content_type != "application/json-patch+json":
            raise CloudError(415, "Content-Type must be application/json-patch+json")
        changes = cloud_api.parse_patch(await _json_body(request))
        device = self.devices[name]
        for key, value in changes.items():
            shown = SCHEMA[key].default if value is None else value
            device.requests.configuration("cloud", key, shown)
            label = cloud_api.config_key(SCHEMA[key])
            if device.configuration_node(key) is None:  # the release or product lacks it
                raise CloudError(400, f"unknown configuration key {label!r}")
            if accepts(key, shown, device.configuration_node) is None:
                raise CloudError(400, f"invalid value {shown!r} for {label}")
        if self.connection_status(name) == "connected":
            if cloud_api.apply_changes(device.config, changes):
                device.save()
        else:
            self._pending.setdefault(name, {}).update(changes)
        items = cloud_api.config_items(self._config_view(name), None, device.configuration_node)
        return web.json_response({"deviceId": device_id, "items": items})


# --------------------------------------------------------------------------- helpers


def _error(
    status: int, message: str, tracking: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    body = {"message": message, "errors": [{"description": message}], "trackingId": tracking}
    return web.json_response(body, status=status, headers=dict(headers or {}))


def _bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _query(request: web.Request) -> dict[str, list[str]]:
    return {key: request.query.getall(key) for key in request.query}


def _single(query: Mapping[str, list[str]], name: str) -> str | None:
    values = query.get(name, [])
    return values[0] if values else None


def _int_param(query: Mapping[str, list[str]], name: str, default: int, minimum: int) -> int:
    text = _single(query, name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise CloudError(400, f"{name} must be a whole number, not {text!r}") from None
    if value < minimum:
        raise CloudError(400, f"{name} must be at least {minimum}")
    return value


async def _json_body(request: web.Request) -> Any:
    raw = await request.read()
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise CloudError(400, "The request body is not valid JSON") from None
