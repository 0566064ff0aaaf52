"""fleet.xapi._ws_upgrade — the HTTP upgrade that opens a device's WebSocket (reference
roomos-local-xapi.md §3.1): the two ways to log in with it, redirects refused, and what each
way it can fail means (for the error tree, the retry rules and the login guard)."""

from __future__ import annotations

import base64
from types import SimpleNamespace

import aiohttp

from ..errors import (
    AuthError,
    BadReplyError,
    DeviceError,
    RateLimitedError,
    TimeoutError_,
    TlsVerifyError,
    TransportError,
    UnreachableError,
)
from ..inventory import Device
from .transport import (
    Exchange,
)

__all__ = [
    "Redirected",
    "auth_subprotocol",
    "handshake_error",
    "refuse_redirect",
    "upgrade_was_answered_or_never_sent",
]


def auth_subprotocol(username: str, password: str) -> str:
    """``auth-<base64url(user:pass)>`` without padding: the browser-style WebSocket login."""
    raw = base64.urlsafe_b64encode(f"{username}:{password}".encode()).decode("ascii")
    return "auth-" + raw.rstrip("=")


class Redirected(Exception):
    def __init__(self, status: int, location: str) -> None:
        super().__init__(status, location)
        self.status = status
        self.location = location


async def refuse_redirect(
    session: aiohttp.ClientSession,
    context: SimpleNamespace,
    params: aiohttp.TraceRequestRedirectParams,
) -> None:
    # Called before aiohttp follows a redirect: stop there, so the login never goes elsewhere.
    raise Redirected(params.response.status, params.response.headers.get("Location", ""))


def upgrade_was_answered_or_never_sent(exc: BaseException) -> bool:
    """Whether a failed upgrade certainly did not count as a failed login: the device
    answered it with a status other than a refusal, or it never left this machine (no
    connection, TLS failed or the pin did not match before a byte of HTTP)."""
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        return exc.status not in (401, 403, 101)
    return isinstance(exc, (Redirected, aiohttp.ServerFingerprintMismatch,
                            aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError))


def handshake_error(
    exc: BaseException, exchange: Exchange, *, device: Device, where: str, read_timeout: float,
) -> tuple[DeviceError, bool, str | None]:
    """What a failed WebSocket upgrade means: (the error, whether another attempt is safe
    and useful, the ``Retry-After`` the device sent with it). Long, but one flat table of
    the ways an upgrade fails, each with its text: splitting it would only scatter them."""
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        status = exc.status
        exchange.http_status = status
        if status in (401, 403):
            return AuthError(
                f"login as {device.username!r} refused (HTTP {status}): wrong "
                "username or password, or the account is locked after failed logins; not "
                "retried, to avoid locking the account"
            ), False, None
        if status == 502:
            return UnreachableError(
                f"{where} answered HTTP 502 to the WebSocket upgrade: the device is "
                "probably restarting"
            ), True, None
        if status == 503:
            retry_after = exc.headers.get("Retry-After") if exc.headers else None
            return RateLimitedError(
                "device refused the WebSocket connection (HTTP 503, connection rate "
                "limit) after retries"
            ), True, retry_after
        if status == 101:
            return BadReplyError(f"invalid WebSocket handshake from {where}: {exc.message}"
                                 ), False, None
        return BadReplyError(
            f"{where} answered HTTP {status} to the WebSocket upgrade: is its WebSocket "
            "API on (NetworkServices Websocket: FollowHTTPService, HTTP Mode not Off)?"
        ), False, None
    if isinstance(exc, Redirected):
        exchange.http_status = exc.status
        return BadReplyError(
            f"{where} redirected the WebSocket upgrade (HTTP {exc.status}) to "
            f"{exc.location!r}; redirects are not followed"
        ), False, None
    if isinstance(exc, aiohttp.ServerFingerprintMismatch):
        return TlsVerifyError(
            f"TLS pin check failed for {where}: certificate SHA-256 {exc.got.hex()} does "
            f"not match the pinned {exc.expected.hex()}"
        ), False, None
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return TlsVerifyError(
            f"TLS certificate of {where} did not verify against {device.verify}: "
            f"{exc.certificate_error}; fix the trust setting (verify:) rather than turning "
            "checks off"
        ), False, None
    if isinstance(exc, aiohttp.ClientSSLError):
        return UnreachableError(f"TLS handshake with {where} failed: {exc}"), True, None
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UnreachableError(f"cannot connect to {where}: {exc.os_error}"), True, None
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return UnreachableError(f"connection to {where} timed out"), True, None
    if isinstance(exc, TimeoutError):
        return TimeoutError_(
            f"no answer to the WebSocket upgrade from {where} within "
            f"{read_timeout:g}s"
        ), True, None
    return TransportError(
        f"connection to {where} broke during the WebSocket upgrade: "
        f"{exc or type(exc).__name__}"
    ), True, None

