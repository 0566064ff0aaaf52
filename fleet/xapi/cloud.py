"""fleet.xapi.cloud — the Webex cloud xAPI: devices reached through ``webexapis.com``.

Facts that shape this module (reference: webex-cloud-api.md):

* Commands are ``POST /v1/xapi/command/{Dotted.Path}`` with ``{"deviceId", "arguments",
  "body"}`` (the multiline payload is the top-level string ``body``); the answer's ``result``
  is the command's result, arrays being lists of objects keyed by ``id`` (§1.2). Status is
  ``GET /v1/xapi/status?deviceId=…&name=…`` (§1.3); an unknown path answers 200 with an empty
  result. Configurations are read and written through the Device Configurations API,
  ``GET``/``PATCH /v1/deviceConfigurations?deviceId=…`` with keys like
  ``Network[1].IEEE8021X.Mode`` and JSON Patch paths ending ``/sources/configured/value`` (§3).
* Whether a device is online is not said by the xAPI itself (§4.5): its ``connectionStatus``
  is read (``GET /v1/devices/{id}``) before anything is sent to it.
* Errors are non-2xx with ``{"message", "errors", "trackingId"}`` (§4.1); an unknown command or
  one the cloud refuses is a 400 ``[Command '…' not supported]`` (§1.2). A 429 may carry
  ``Retry-After`` in seconds, an HTTP date, a malformed value or nothing, and its body may be
  HTML (§4.3).
* Rate limits are about 300 requests a minute **per user** (§4.3): every device reached with
  one token shares one :class:`RatePacer` (a token bucket at 280/min by default, with a small
  burst), so a large run does not provoke 429s by itself; a 429 that comes anyway pauses the
  pacer — every device of that token — for the time asked, then the request is sent again.
* 401 and 403 are never retried. 502/503/504 and broken connections are retried only for
  calls that are safe to repeat (reads, listings, idempotent commands).

The bearer token is a :class:`~fleet.secrets.Secret`: it goes into the ``Authorization``
header and nowhere else — not into errors, not into the recorded exchanges.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from ..errors import (
    AuthError,
    BadReplyError,
    CommandError,
    DeviceError,
    InputError,
    NotSupportedError,
    ParameterError,
    TransportError,
    UnreachableError,
)
from ..inventory import Device
from ._cloud_data import (
    ConfigInfo,
    config_key,
    config_tree,
    descend,
    dotted,
    raise_in_band,
)
from ._pacer import DEFAULT_BURST, DEFAULT_RATE_PER_MINUTE, MAX_RETRY_AFTER, RatePacer
from .transport import (
    Exchange,
    ParamValue,
    Recorder,
    normalise_json,
    recorded,
)
from .webex_api import (
    DEFAULT_RETRY_AFTER,
    CloudClients,
    WebexApi,
    WebexProblem,
    api_base,
    json_object,
    parse_retry_after,
    proxy_for,
    webex_error,
)

__all__ = [
    "CONNECTED_STATES",
    "DEFAULT_BURST",
    "DEFAULT_RATE_PER_MINUTE",
    "DEFAULT_RETRY_AFTER",
    "MAX_RETRY_AFTER",
    "CloudClients",
    "CloudTransport",
    "RatePacer",
    "WebexApi",
    "api_base",
    "config_key",
    "parse_retry_after",
    "proxy_for",
    "webex_error",
]

#: connectionStatus values that mean the device can take xAPI calls (lenient: §2 "Online")
CONNECTED_STATES = frozenset({"connected", "connected_with_issues", "online"})


_NOT_AVAILABLE = re.compile(
    r"not supported|not allowed|not available|not permitted|unknown command|no such command",
    re.IGNORECASE,
)
_PARAMETER = re.compile(
    r"parameter|argument|value ?space|invalid value|out of range|missing|required|too long",
    re.IGNORECASE,
)


class CloudTransport:
    """xAPI for one device through the Webex cloud (``transport: cloud`` in the inventory)."""

    name = "cloud"

    def __init__(self, device: Device, api: WebexApi, *, recorder: Recorder | None = None) -> None:
        if not device.device_id:
            raise InputError(f"device {device.name} has no device_id (transport: cloud)")
        self.device = device
        self.device_id = device.device_id
        self._api = api
        self._recorder = recorder
        self._checked = False
        self._permissions: tuple[str, ...] = ()
        self._config: dict[str, ConfigInfo] = {}
        #: what ``GET /v1/devices/{id}`` said (product, serial, connectionStatus, ...)
        self.info: dict[str, Any] = {}

    async def __aenter__(self) -> CloudTransport:
        await self.check_device()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    # -- the device's state in Webex ---------------------------------------------------

    async def check_device(self) -> dict[str, Any]:
        """Read the device's record; UnreachableError when it is not connected."""
        exchange = Exchange(kind="session", path=f"devices/{self.device_id}")

        async def call() -> dict[str, Any]:
            response = await self._api.send(
                "GET", self._api.url("/v1/devices/" + quote(self.device_id, safe="")),
                exchange=exchange, idempotent=True,
            )
            if response.status_code == 404:
                raise UnreachableError(
                    f"Webex does not know device id {self.device_id} (HTTP 404): removed from "
                    "the org, or not visible to this token"
                )
            self._api.raise_for_status(response, "the device lookup")
            data = json_object(response, "the device lookup")
            status = str(data.get("connectionStatus") or "unknown")
            if status.lower() not in CONNECTED_STATES:
                raise UnreachableError(f"device is offline in Webex (connectionStatus {status})")
            capabilities = data.get("capabilities")
            if isinstance(capabilities, list) and capabilities and "xapi" not in capabilities:
                raise CommandError(
                    "the device offers no xAPI through Webex (capabilities: "
                    f"{', '.join(map(str, capabilities))})"
                )
            return data

        data: dict[str, Any] = await self._run(exchange, call)
        self.info = data
        permissions = data.get("permissions")
        if isinstance(permissions, list):
            self._permissions = tuple(str(p) for p in permissions)
        self._checked = True
        return data

    # -- calls ------------------------------------------------------------------------

    async def command(
        self,
        path: Sequence[str],
        params: Mapping[str, ParamValue] | None = None,
        body: str | None = None,
        *,
        idempotent: bool = False,
    ) -> dict[str, Any]:
        exchange = Exchange.command(path, params, body)

        async def call() -> dict[str, Any]:
            if not self._checked:
                await self.check_device()
            if self._permissions and "xapi:all" not in self._permissions:
                raise AuthError(
                    "this token has no command access to the device through Webex "
                    f"(permissions: {', '.join(self._permissions)}); commands need the "
                    "workspace's Full Access grant"
                )
            name = dotted(path, "command")
            payload: dict[str, Any] = {
                "deviceId": self.device_id,
                "arguments": {k: (v if isinstance(v, (str, int)) else list(v))
                              for k, v in (params or {}).items()},
            }
            if body is not None:
                payload["body"] = body
            response = await self._api.send(
                "POST", self._api.url("/v1/xapi/command/" + name), exchange=exchange,
                json_body=payload, idempotent=idempotent,
            )
            status = response.status_code
            if status in (502, 503, 504) and not idempotent:
                problem = webex_error(response)
                raise TransportError(
                    f"Webex failed the command ({problem.text()}); not sent again, as the "
                    "device may have run it"
                )
            if status in (400, 404, 409, 422):
                raise self._command_error(name, webex_error(response))
            self._api.raise_for_status(response, f"command {name}")
            data = json_object(response, f"command {name}")
            result = data.get("result", {})
            if result is None:
                result = {}
            if not isinstance(result, dict):
                raise BadReplyError(f"the result of {name} is not a structure")
            raise_in_band(result, name)
            normalised: dict[str, Any] = normalise_json(result)
            details = normalised.get("Details")
            if isinstance(details, dict):
                normalised["Details"] = [details]
            elif details == "":
                normalised["Details"] = []
            return normalised

        result: dict[str, Any] = await self._run(exchange, call)
        return result

    def _command_error(self, name: str, problem: WebexProblem) -> DeviceError:
        text = problem.text()
        if _NOT_AVAILABLE.search(problem.message):
            reason = (f"unknown command, or not available through the Webex cloud xAPI: "
                      f"{problem.message}")
            return NotSupportedError(
                f"{name} is not available through the Webex cloud xAPI (the device does not "
                f"have it, or the cloud does not allow it): {text}",
                reason=reason,
            )
        if _PARAMETER.search(problem.message):
            return ParameterError(f"parameter error: {text}", reason=problem.message)
        return CommandError(f"the device refused {name}: {text}", reason=problem.message)

    async def get(self, path: Sequence[str | int]) -> Any:
        if not path or path[0] not in ("Status", "Configuration"):
            raise ParameterError(f"get needs a Status or Configuration path, not {path!r}",
                                 reason="invalid path")
        if path[0] == "Configuration":
            return await self._read_configuration(path)
        expression = dotted(path[1:], "status")
        exchange = Exchange.read(path)

        async def call() -> Any:
            if not self._checked:
                await self.check_device()
            # the node itself and everything below it (a wildcard matches sub-nodes only)
            response = await self._api.send(
                "GET", self._api.url("/v1/xapi/status"), exchange=exchange, idempotent=True,
                params=[("deviceId", self.device_id), ("name", expression),
                        ("name", expression + ".*")],
            )
            self._api.raise_for_status(response, f"status {expression}")
            data = json_object(response, f"status {expression}")
            result = data.get("result")
            if isinstance(result, dict) and set(result) == {"Status"}:
                result = result["Status"]
            found = descend(result, path[1:])
            return None if found is None else normalise_json(found)

        return await self._run(exchange, call)

    async def _config_items(self, exchange: Exchange, key: str) -> dict[str, Any]:
        response = await self._api.send(
            "GET", self._api.url("/v1/deviceConfigurations"), exchange=exchange,
            idempotent=True, params=[("deviceId", self.device_id), ("key", key)],
        )
        if response.status_code in (400, 404):
            return {}  # an unknown key: read as "no such node", like getxml
        self._api.raise_for_status(response, f"configuration {key}")
        items = json_object(response, f"configuration {key}").get("items")
        if not isinstance(items, dict):
            return {}
        for name, item in items.items():
            self._config[name.lower()] = ConfigInfo.of(item)
        return items

    async def _read_configuration(self, path: Sequence[str | int]) -> Any:
        key = config_key(path[1:])
        exchange = Exchange.read(path)

        async def call() -> Any:
            items = await self._config_items(exchange, key + ".*")
            if not items:  # a leaf: a wildcard matches only what is below a node
                items = await self._config_items(exchange, key)
            return config_tree(items, key) if items else None

        return await self._run(exchange, call)

    async def configure(self, path: Sequence[str | int], value: str) -> None:
        key = config_key(path)
        exchange = Exchange.configure(path, value)

        async def call() -> None:
            info = self._config.get(key.lower())
            if info is None:
                items = await self._config_items(exchange, key)
                info = self._config.get(key.lower())
                if info is None or not items:
                    raise ParameterError(
                        f"configuration {key} is not known to Webex for this device",
                        reason="unknown configuration",
                    )
            if not info.editable:
                raise CommandError(
                    f"configuration {key} cannot be changed through Webex"
                    + (f" ({info.reason})" if info.reason else ""),
                    reason=info.reason or "not editable",
                )
            patch = [{"op": "replace", "path": f"{key}/sources/configured/value",
                      "value": info.coerce(key, value)}]
            response = await self._api.send(
                "PATCH", self._api.url("/v1/deviceConfigurations"), exchange=exchange,
                params=[("deviceId", self.device_id)], json_body=patch,
                content_type="application/json-patch+json", idempotent=True,
            )
            if response.status_code in (400, 422):
                problem = webex_error(response)
                raise ParameterError(f"Webex refused {key} = {exchange.params['value']}: "
                                     f"{problem.text()}", reason=problem.message)
            self._api.raise_for_status(response, f"configuration {key}")

        await self._run(exchange, call)

    # -- plumbing ---------------------------------------------------------------------

    async def _run(self, exchange: Exchange, call: Callable[[], Awaitable[Any]]) -> Any:
        with recorded(exchange, self._recorder, self.device.name):
            return await call()


