"""fleet.xapi.webex_api — one access token's requests to the Webex API: the HTTP client set-up
(proxies from the environment, verified TLS), pacing, retries, ``Retry-After``, and the error
answers every endpoint shares (reference webex-cloud-api.md §4). The bearer token goes into the
``Authorization`` header and nowhere else."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from ..errors import (
    AuthError,
    BadReplyError,
    DeviceError,
    InputError,
    RateLimitedError,
    TlsVerifyError,
    TransportError,
)
from ..inventory import Verify
from ..secrets import Secret, redact
from ._config import USER_AGENT, Backoff, RetryPolicy, Timeouts, retry_after_seconds
from ._http import failure_error
from ._httpx import build_client, failure_from_httpx, redact_url
from ._login import LoginGuard, LoginGuards, after_failure
from ._pacer import (
    DEFAULT_BURST,
    DEFAULT_RATE_PER_MINUTE,
    Clock,
    RatePacer,
    Sleep,
)
from .transport import (
    MAX_JSON_DEPTH,
    Exchange,
    nested_too_deep,
)

__all__ = [
    "DEFAULT_API_BASE",
    "DEFAULT_RETRY_AFTER",
    "MAX_RATE_LIMITED",
    "MIN_RETRY_AFTER",
    "CloudClients",
    "WebexApi",
    "WebexProblem",
    "api_base",
    "json_object",
    "parse_retry_after",
    "proxy_for",
    "webex_error",
]

DEFAULT_API_BASE = "https://webexapis.com"
#: the wait after a 429 whose Retry-After is missing or unreadable (WebexPythonSDK: 15 s)
DEFAULT_RETRY_AFTER = 15.0
MIN_RETRY_AFTER = 1.0
#: 429s one call may meet before it gives up
MAX_RATE_LIMITED = 10
#: answers that are safe to send again for calls that are safe to repeat
_RETRY_STATUSES = frozenset({502, 503, 504})


def proxy_for(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTPS_PROXY``/``https_proxy``, or
    ``ALL_PROXY``), unless ``NO_PROXY`` exempts its host; None for a direct connection.
    Only ``http://`` proxies are used (the tunnel carries end-to-end verified TLS)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if urllib.request.proxy_bypass_environment(host):  # type: ignore[attr-defined]
        return None
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy:
        return None
    if "://" not in proxy:
        proxy = f"http://{proxy}"
    if not proxy.startswith("http://"):
        raise InputError(
            f"the proxy {redact_url(proxy)} for the Webex API is not an http:// proxy; "
            "certfleet tunnels HTTPS through an http:// proxy only"
        )
    return proxy


def api_base(url: str) -> str:
    """``https://webexapis.com/v1/`` → ``https://webexapis.com`` (paths add ``/v1`` themselves)."""
    base = url.strip().rstrip("/")
    if base.endswith("/v1"):
        base = base[:-3]
    return base


def parse_retry_after(
    value: str | None, *, now: float, default: float = DEFAULT_RETRY_AFTER
) -> tuple[float, str]:
    """Seconds to wait after a 429 with this ``Retry-After`` value, and how it was read
    (read by :func:`fleet.xapi._config.retry_after_seconds`; ``now``: the wall clock).
    Missing or unreadable values give ``default``; the wait is never under one second."""
    text = (value or "").strip()
    seconds = retry_after_seconds(text, now=now)
    if seconds is None:
        how = "unreadable Retry-After" if text else "no Retry-After"
        return max(default, MIN_RETRY_AFTER), how
    how = "Retry-After date" if not text[:1].isdigit() else f"Retry-After {text}"
    return max(seconds, MIN_RETRY_AFTER), how


def _token_key(token: Secret) -> str:
    return hashlib.sha256(token.reveal().encode()).hexdigest()


class CloudClients:
    """What every cloud transport of a run shares: one HTTP client per TLS trust setting of
    the API, one :class:`RatePacer` per access token (Webex limits are per user)."""

    def __init__(
        self,
        *,
        max_connections: int = 20,
        timeouts: Timeouts | None = None,
        rate_per_minute: float = DEFAULT_RATE_PER_MINUTE,
        burst: int = DEFAULT_BURST,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        wall_clock: Clock = time.time,
    ) -> None:
        # the same client set-up as for devices: verified TLS (CA file, pin, system), no
        # cookies, no CA bundles from the environment, no redirects — but the API is on the
        # internet, so HTTPS_PROXY / NO_PROXY are honoured for it (never for devices)
        self._clients: dict[tuple[str, str | None], httpx.AsyncClient] = {}
        #: the proxy of each API URL, read from the environment once a run (not once a device)
        self._proxies: dict[str, str | None] = {}
        self._max = max_connections
        self._timeouts = timeouts or Timeouts()
        self._pacers: dict[str, RatePacer] = {}
        self._logins = LoginGuards()  # one per token: a refused token is not sent again
        self._rate = rate_per_minute
        self._burst = burst
        self.clock = clock
        self.sleep = sleep
        self.wall_clock = wall_clock

    def client_for(self, verify: Verify, base_url: str = DEFAULT_API_BASE) -> httpx.AsyncClient:
        if base_url in self._proxies:
            proxy = self._proxies[base_url]
        else:
            proxy = self._proxies[base_url] = proxy_for(base_url)
        key = (str(verify), proxy)
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = build_client(
                verify, max_connections=self._max, timeouts=self._timeouts, proxy=proxy
            )
        return client

    def pacer_for(self, token: Secret, rate_per_minute: float | None = None) -> RatePacer:
        """The token's pacer; ``rate_per_minute`` (the inventory's ``api_rate_per_minute``)
        replaces the default rate, and when devices of one token ask for different rates the
        lowest wins."""
        rate = rate_per_minute or self._rate
        key = _token_key(token)
        pacer = self._pacers.get(key)
        if pacer is None:
            pacer = self._pacers[key] = RatePacer(
                rate, self._burst, clock=self.clock, sleep=self.sleep
            )
        else:
            pacer.slow_down(rate)
        return pacer

    @property
    def pacers(self) -> list[RatePacer]:
        return list(self._pacers.values())

    def api(self, base_url: str, verify: Verify, token: Secret,
            retry: RetryPolicy | None = None, *,
            rate_per_minute: float | None = None) -> WebexApi:
        pacer = self.pacer_for(token, rate_per_minute)
        login = self._logins.get(api_base(base_url), _token_key(token),
                                 label=f"the Webex API at {api_base(base_url)}")
        return WebexApi(self.client_for(verify, base_url), token, pacer,
                        base_url=base_url, verify=verify, retry=retry, sleep=self.sleep,
                        wall_clock=self.wall_clock, login=login)

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()


@dataclass(frozen=True)
class WebexProblem:
    """What a non-2xx Webex answer said (never the request's headers)."""

    status: int
    message: str
    tracking_id: str | None

    def text(self) -> str:
        tracking = f" (trackingId {self.tracking_id})" if self.tracking_id else ""
        return f"HTTP {self.status}: {self.message}{tracking}"


def webex_error(response: httpx.Response) -> WebexProblem:
    """The message and trackingId of an error answer; tolerant of HTML and empty bodies."""
    message = ""
    tracking: str | None = None
    try:
        data = response.json()
    except (ValueError, UnicodeDecodeError, RecursionError):
        data = None
    if isinstance(data, dict):
        raw = data.get("message")
        if isinstance(raw, str) and raw.strip():
            message = raw.strip()
        errors = data.get("errors")
        if not message and isinstance(errors, list):
            for item in errors:
                if isinstance(item, dict) and isinstance(item.get("description"), str):
                    message = item["description"].strip()
                    break
        if isinstance(data.get("trackingId"), str):
            tracking = data["trackingId"]
    if not message:
        kind = response.headers.get("content-type", "").split(";")[0].strip()
        message = (f"no usable error text (a {kind} body)" if kind and response.content
                   else "no error text")
    tracking = tracking or response.headers.get("trackingid")
    # an echo of something secret in a reply would otherwise reach the report
    return WebexProblem(response.status_code, redact(message[:500]), tracking)


class WebexApi:
    """One access token's requests to the Webex API: paced, retried, errors mapped.

    Every request waits for the token's :class:`RatePacer`. A 429 pauses that pacer for the
    ``Retry-After`` time and is sent again (it was not processed, so this is safe for every
    call). 502/503/504 and broken connections are sent again only when ``idempotent``.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        token: Secret,
        pacer: RatePacer,
        *,
        base_url: str,
        verify: Verify | None = None,
        retry: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        wall_clock: Clock = time.time,
        max_rate_limited: int = MAX_RATE_LIMITED,
        login: LoginGuard | None = None,
    ) -> None:
        self._client = client
        self._token = token
        #: every request carries the token: see fleet.xapi._login
        self._login = login or LoginGuard(f"the Webex API at {api_base(base_url)}")
        self.pacer = pacer
        self.base_url = api_base(base_url)
        self._verify = verify
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._wall = wall_clock
        self._max_rate_limited = max_rate_limited
        origin = urlsplit(self.base_url)
        self._origin = (origin.scheme, origin.netloc.lower())

    def url(self, path: str) -> str:
        return self.base_url + path

    def same_origin(self, url: str) -> bool:
        """The token goes only to the API it was configured for (``Link`` URLs are checked)."""
        parts = urlsplit(url)
        return (parts.scheme, parts.netloc.lower()) == self._origin

    async def send(
        self,
        method: str,
        url: str,
        *,
        exchange: Exchange | None = None,
        params: Sequence[tuple[str, str | int]] | None = None,
        json_body: Any = None,
        content_type: str = "application/json",
        idempotent: bool,
    ) -> httpx.Response:
        """Send one request (again as the rules above allow); return the final answer.

        Raises for transport failures and for 429s past the limit; other statuses are the
        caller's to judge.
        """
        # One loop, kept whole (~70 lines): pacing, the login gate, retry and 429 handling share
        # its counters, and one request's life reads top to bottom.
        if not self.same_origin(url):
            raise BadReplyError(f"refused to send the Webex token to {url}: not the API at "
                                f"{self.base_url}")
        headers = {
            "Authorization": f"Bearer {self._token.reveal()}",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        content: bytes | None = None
        if json_body is not None:
            content = json.dumps(json_body).encode()
            headers["Content-Type"] = content_type
        backoff = Backoff(self._retry, sleep=self._sleep)
        limited = 0
        sends = 0
        while True:
            await self.pacer.acquire()
            sends += 1
            if exchange is not None:
                exchange.attempts = sends
            await self._login.acquire()
            try:
                response = await self._client.request(
                    method, url, params=list(params) if params else None, content=content,
                    headers=headers,
                )
            except httpx.HTTPError as exc:
                error, retryable = self._failed(exc, idempotent)
                if retryable and backoff.more:
                    await backoff.pause()
                    continue
                raise error from None
            except BaseException:
                self._login.lost()  # cancelled with the request out
                raise
            if exchange is not None:
                exchange.http_status = response.status_code
            status = response.status_code
            self._verdict(status)
            if status == 429:
                limited += 1
                wait, how = parse_retry_after(response.headers.get("Retry-After"),
                                              now=self._wall())
                if limited > self._max_rate_limited:
                    raise RateLimitedError(
                        f"Webex kept answering HTTP 429 (rate limited): {limited} times for "
                        "one request; run again later, with fewer devices at once or another "
                        "token"
                    )
                # everyone on this token waits; the next acquire() raises if it is too long
                self.pacer.pause(wait, f"HTTP 429, {how}")
                continue
            if status in _RETRY_STATUSES and idempotent and backoff.more:
                await backoff.pause(response.headers.get("Retry-After"))
                continue
            return response

    def _failed(self, exc: httpx.HTTPError, idempotent: bool) -> tuple[DeviceError, bool]:
        """A request that got no answer: (the error, whether it may be sent again)."""
        failure = failure_from_httpx(exc)
        error = failure_error(
            failure, where=f"the Webex API at {self.base_url}",
            trust=str(self._verify or "the system store"), setting="api_verify:",
        )
        retryable = after_failure(
            self._login, error, sent=failure.sent,
            retryable=not isinstance(error, TlsVerifyError) and (idempotent or not failure.sent),
        )
        return error, retryable

    def _verdict(self, status: int) -> None:
        """What an answer says about the token (see fleet.xapi._login)."""
        if status == 401:
            self._login.refused("Webex refused the access token (HTTP 401)")
        elif status == 429 or status >= 500:
            self._login.no_verdict()
        else:
            self._login.accepted()

    def raise_for_status(self, response: httpx.Response, what: str) -> None:
        """Map the answers every endpoint shares; 2xx passes."""
        status = response.status_code
        if 200 <= status < 300:
            return
        problem = webex_error(response)
        if status == 401:
            raise AuthError(
                f"Webex refused the access token for {what} ({problem.text()}): it is "
                "missing, invalid or expired (personal tokens last 12 hours); not retried"
            )
        if status == 403:
            raise AuthError(
                f"Webex refused {what} ({problem.text()}): the token lacks the scope "
                "(spark:xapi_commands, spark:xapi_statuses, spark-admin:devices_read/write) "
                "or the workspace's API access grant; not retried"
            )
        if status == 429:
            raise RateLimitedError(f"Webex rate limited {what} ({problem.text()})")
        if status >= 500:
            raise TransportError(f"Webex failed {what} ({problem.text()})")
        raise BadReplyError(f"Webex answered {what} with {problem.text()}")


def json_object(response: httpx.Response, what: str) -> dict[str, Any]:
    try:
        data = response.json()
    except RecursionError:
        raise BadReplyError(f"Webex answered {what} with JSON nested deeper than can be read") \
            from None
    except (ValueError, UnicodeDecodeError):
        kind = response.headers.get("content-type", "no content type")
        raise BadReplyError(f"Webex answered {what} with a body that is not JSON ({kind})") \
            from None
    if not isinstance(data, dict):
        raise BadReplyError(f"Webex answered {what} with JSON that is not an object")
    if nested_too_deep(data):
        raise BadReplyError(f"Webex answered {what} with JSON nested more than "
                            f"{MAX_JSON_DEPTH} deep: refused")
    return data


