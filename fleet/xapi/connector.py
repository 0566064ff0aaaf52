"""fleet.xapi.connector — the transport factory: one :class:`Connector` per run builds each
device's transport (local, WebSocket or cloud, as its inventory entry says) and owns what the
transports of a run share: TLS contexts, the cloud's HTTP clients and rate pacers, and the
login guards (a request that carries credentials goes at most once per device per run).

The cloud and WebSocket transports are imported when the first such device is met: a
local-only run does not load httpx or aiohttp."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ..errors import InputError
from ..inventory import Device
from ..secrets import Secret, SecretRef
from ._config import RetryPolicy, Timeouts
from ._login import LoginGuard, LoginGuards
from .local import LocalClients, LocalTransport
from .transport import Exchange, XapiTransport

__all__ = ["ConnectionSettings", "Connector", "RetryPolicy", "Timeouts"]


class ConnectionSettings(Protocol):
    """What the connector needs of a run's options (``fleet.runner.RunOptions`` has it)."""

    @property
    def parallel(self) -> int: ...

    @property
    def timeouts(self) -> Timeouts: ...

    @property
    def retry(self) -> RetryPolicy: ...


class Connector:
    """Builds the transport for each device and owns what transports share (HTTP clients)."""

    def __init__(self, secrets: Mapping[SecretRef, Secret], options: ConnectionSettings) -> None:
        self._secrets = secrets
        self._options = options
        self._local = LocalClients(timeouts=options.timeouts)
        self._shared: dict[str, Any] = {}  # per-transport shared state (e.g. cloud pacers)
        # one per account and device for the whole run, whatever transport or entry reaches
        # it: a login whose answer was lost, or that was refused, is not sent again
        self._logins = LoginGuards()

    def _secret(self, device: Device, ref: SecretRef | None, what: str) -> Secret:
        if ref is None:
            raise InputError(f"{device.name}: no {what} configured for transport "
                             f"{device.transport!r}")
        return self._secrets[ref]

    def _login(self, device: Device) -> LoginGuard:
        return self._logins.for_device(device)

    def transport(self, device: Device, recorder: Callable[[Exchange], None]) -> XapiTransport:
        if device.transport == "local":
            return LocalTransport(
                device,
                self._local.device_client(device.verify),
                self._secret(device, device.password, "password"),
                retry=self._options.retry,
                recorder=recorder,
                owns_client=True,
                login=self._login(device),
            )
        if device.transport == "websocket":
            from ._config import ssl_context_for
            from .websocket import WebSocketTransport

            return WebSocketTransport(
                device,
                self._secret(device, device.password, "password"),
                # one TLS context per verify setting for the whole run, as for local devices
                ssl_context=ssl_context_for(device.verify),
                timeouts=self._options.timeouts,
                retry=self._options.retry,
                recorder=recorder,
                login=self._login(device),
            )
        if device.transport == "cloud":
            # imported when a cloud device is met: a local-only run need not load httpx
            from .cloud import CloudClients, CloudTransport

            token = self._secret(device, device.token, "token")
            shared = self._shared.get("cloud")
            if not isinstance(shared, CloudClients):
                # one HTTP client per API trust setting, one rate pacer per token, for the run
                shared = self._shared["cloud"] = CloudClients(
                    max_connections=max(self._options.parallel, 10),
                    timeouts=self._options.timeouts,
                )
            api = shared.api(device.api_url, device.api_verify, token, self._options.retry,
                             rate_per_minute=device.api_rate_per_minute)
            return CloudTransport(device, api, recorder=recorder)
        raise InputError(
            f"{device.name}: transport {device.transport!r} is not available in this version "
            "of certfleet"
        )

    async def aclose(self) -> None:
        for shared in self._shared.values():
            closer = getattr(shared, "aclose", None)
            if closer is not None:
                await closer()
