"""fleet.xapi._http — the HTTP requests the local transport makes, behind one small interface.

:class:`HttpClient` is all :class:`~fleet.xapi.local.LocalTransport` needs: send one request,
get the whole reply back as an :class:`HttpReply`, or an :class:`HttpFailure` that says
whether the request may have reached the device (``sent``) — the retry rules hang on that.

Two implementations (only the first is imported on a run's path):

* :class:`AiohttpClient`, what runs against devices: one small client per device (calls to one
  device are sequential), TLS verified as the inventory says, a pinned certificate checked
  right after the handshake and before a byte of HTTP (so no credential goes to the wrong
  device), no cookie jar, no proxies, no redirects. aiohttp was chosen over httpx for this
  path because a fleet run is many short requests and its per-request cost is about a third
  of httpx's (bench/fleet_bench.py; the httpx pool also scanned every connection on each
  request, which grew with the fleet).
* :class:`fleet.xapi._httpx.HttpxClient`, the same interface over an ``httpx.AsyncClient``:
  unit tests drive the transport's edge cases through ``httpx.MockTransport`` / respx.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import aiohttp

__all__ = [
    "AiohttpClient",
    "ConnectFailed",
    "ConnectTimedOut",
    "ConnectionBroke",
    "HttpClient",
    "HttpFailure",
    "HttpReply",
    "ReplyTimedOut",
    "TlsRejected",
]

_USER_AGENT = "certfleet/0.1"


@dataclass(frozen=True, slots=True)
class HttpReply:
    """A whole reply: status, headers (names lower-case), cookies set, body."""

    status: int
    headers: Mapping[str, str]
    cookies: Mapping[str, str]
    body: bytes


class HttpFailure(Exception):
    """No reply. ``sent`` is False only when the request certainly did not reach the device
    (the connection was never made), so even a write may be sent again."""

    sent = True

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConnectFailed(HttpFailure):
    sent = False


class ConnectTimedOut(ConnectFailed):
    pass


class TlsRejected(ConnectFailed):
    """The device's certificate did not verify (``pinned``: it is not the pinned one)."""

    def __init__(self, message: str, *, pinned: bool = False) -> None:
        super().__init__(message)
        self.pinned = pinned


class ReplyTimedOut(HttpFailure):
    pass


class ConnectionBroke(HttpFailure):
    pass


class HttpClient(Protocol):
    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None = None,
        query: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> HttpReply:
        """Send one request; ``timeout`` (seconds) replaces the read timeout for this one."""
        ...

    async def aclose(self) -> None: ...


class AiohttpClient:
    """One device's HTTP client (see the module docstring). ``ssl_context`` verifies the
    certificate chain; with ``pin_sha256`` the context must not verify (the pin replaces it)
    and the certificate's SHA-256 is compared instead."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        *,
        connect_timeout: float,
        read_timeout: float,
        pin_sha256: str | None = None,
        max_connections: int = 2,
    ) -> None:
        self._ssl: ssl.SSLContext | aiohttp.Fingerprint = (
            aiohttp.Fingerprint(bytes.fromhex(pin_sha256)) if pin_sha256 else ssl_context
        )
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_read=read_timeout
        )
        self._read_timeout = read_timeout
        self._max = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            ssl=self._ssl, limit=self._max, limit_per_host=self._max, use_dns_cache=False,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),  # cookies never travel between devices
            timeout=self._timeout,
            trust_env=False,  # no proxies, no .netrc from the environment
            headers={"User-Agent": _USER_AGENT},
            auto_decompress=True,
        )
        return self._session

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None = None,
        query: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> HttpReply:
        session = self._session or self._open()
        per_call = (
            None if timeout is None
            else aiohttp.ClientTimeout(total=None, connect=self._timeout.connect,
                                       sock_read=timeout)
        )
        try:
            async with session.request(
                method, url, data=body, headers=dict(headers), params=query,
                allow_redirects=False, timeout=per_call or self._timeout,
            ) as response:
                content = await response.read()
                return HttpReply(
                    status=response.status,
                    headers={k.lower(): v for k, v in response.headers.items()},
                    cookies={name: morsel.value for name, morsel in response.cookies.items()},
                    body=content,
                )
        except aiohttp.ServerFingerprintMismatch as exc:
            raise TlsRejected(
                f"certificate SHA-256 {exc.got.hex()} does not match the pinned "
                f"{exc.expected.hex()}", pinned=True,
            ) from None
        except aiohttp.ClientConnectorCertificateError as exc:
            reason = getattr(exc.certificate_error, "verify_message", "") or str(exc)
            raise TlsRejected(f"certificate verify failed: {reason}") from None
        except aiohttp.ConnectionTimeoutError:
            raise ConnectTimedOut("connection timed out") from None
        except aiohttp.ClientConnectorError as exc:
            raise ConnectFailed(str(exc.os_error) or type(exc).__name__) from None
        except aiohttp.ServerTimeoutError:
            raise ReplyTimedOut(
                f"no reply within {timeout or self._read_timeout:g}s"
            ) from None
        except (aiohttp.ClientError, ssl.SSLError, OSError, asyncio.IncompleteReadError) as exc:
            raise ConnectionBroke(str(exc) or type(exc).__name__) from None

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
