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

import asyncio
import email.utils
import hashlib
import json
import math
import re
import time
import urllib.request
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from fleet.errors import (
    AuthError,
    BadReplyError,
    CommandError,
    DeviceError,
    InputError,
    NotSupportedError,
    ParameterError,
    RateLimitedError,
    TimeoutError_,
    TlsVerifyError,
    TransportError,
    UnreachableError,
)
from fleet.inventory import DEFAULT_API_RATE_PER_MINUTE, Device, Verify
from fleet.secrets import Secret, redact
from fleet.xapi._httpx import PinMismatch, build_client, redact_url
from fleet.xapi._login import NOT_RESENT, LoginGuard, LoginGuards
from fleet.xapi._config import RetryPolicy, Timeouts
from fleet.xapi.transport import (
    MAX_JSON_DEPTH,
    SECRET_PARAMS,
    Exchange,
    ParamValue,
    Recorder,
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

#: requests a minute one token may send: under Webex's ~300/min with room for other clients
DEFAULT_RATE_PER_MINUTE = DEFAULT_API_RATE_PER_MINUTE
DEFAULT_API_BASE = "https://webexapis.com"
#: requests that may go at once after a quiet spell (any 60 s window: at most rate + burst)
DEFAULT_BURST = 10
#: the wait after a 429 whose Retry-After is missing or unreadable (WebexPythonSDK: 15 s)
DEFAULT_RETRY_AFTER = 15.0
MIN_RETRY_AFTER = 1.0
#: a 429 asking for longer than this fails the devices at once instead of holding the run
MAX_RETRY_AFTER = 300.0
#: 429s one call may meet before it gives up
MAX_RATE_LIMITED = 10
#: connectionStatus values that mean the device can take xAPI calls (lenient: §2 "Online")
CONNECTED_STATES = frozenset({"connected", "connected_with_issues", "online"})
#: answers that are safe to send again for calls that are safe to repeat
_RETRY_STATUSES = frozenset({502, 503, 504})
_USER_AGENT = "certfleet/0.1"
_PART_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


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


def _dotted(path: Sequence[str | int], what: str) -> str:
    """``("Network", 1, "IEEE8021X", "Mode")`` → ``Network[1].IEEE8021X.Mode``."""
    parts: list[str] = []
    for part in path:
        if isinstance(part, int):
            if not parts or part < 1:
                raise ValueError(f"{what}: an index must follow a name and be 1 or more: {path!r}")
            parts[-1] += f"[{part}]"
        elif _PART_RE.fullmatch(part):
            parts.append(part)
        else:
            raise ValueError(f"{what}: not a valid xAPI name: {part!r}")
    if not parts:
        raise ValueError(f"{what}: empty path")
    return ".".join(parts)


def config_key(path: Sequence[str | int]) -> str:
    """The Device Configurations key of a configuration path (reference §3)."""
    return _dotted(path, "configuration")


# ------------------------------------------------------------------------ Retry-After


def parse_retry_after(
    value: str | None, *, now: float, default: float = DEFAULT_RETRY_AFTER
) -> tuple[float, str]:
    """Seconds to wait for a ``Retry-After`` value, and how it was read.

    Integer (or decimal) seconds, or an HTTP date (``now`` is the wall clock, epoch
    seconds). Missing, malformed (``rand(30),add(30)`` has been seen) or negative values
    give ``default``; the wait is never under one second.
    """
    text = (value or "").strip()
    if not text:
        return max(default, MIN_RETRY_AFTER), "no Retry-After"
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return max(float(text), MIN_RETRY_AFTER), f"Retry-After {text}"
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return max(default, MIN_RETRY_AFTER), "unreadable Retry-After"
    if when.tzinfo is None:
        return max(default, MIN_RETRY_AFTER), "unreadable Retry-After"
    return max(when.timestamp() - now, MIN_RETRY_AFTER), "Retry-After date"


# ------------------------------------------------------------------------------ pacer


class RatePacer:
    """A token bucket shared by every request made with one access token.

    ``rate_per_minute`` tokens are added evenly; at most ``burst`` wait in the bucket, so in
    any 60 s at most ``rate_per_minute + burst`` requests leave. Waiters are served in order
    (one sleeps at a time, holding the lock). :meth:`pause` stops everyone until a time —
    after a 429 — and then resumes at the steady rate, with no burst. A pause longer than
    ``max_wait`` makes :meth:`acquire` raise :class:`RateLimitedError` at once: holding a
    whole run for an hour is worse than saying so.
    """

    def __init__(
        self,
        rate_per_minute: float = DEFAULT_RATE_PER_MINUTE,
        burst: int = DEFAULT_BURST,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        max_wait: float = MAX_RETRY_AFTER,
    ) -> None:
        if rate_per_minute <= 0 or burst < 1:
            raise ValueError("the pacer needs a positive rate and a burst of at least 1")
        self.rate_per_minute = rate_per_minute
        self.burst = burst
        self._per_second = rate_per_minute / 60.0
        self._clock = clock
        self._sleep = sleep
        self._max_wait = max_wait
        self._tokens = float(burst)
        self._stamp = clock()
        self._paused_until = -math.inf
        self._pause_reason = ""
        self._lock = asyncio.Lock()
        #: counters for reports and tests
        self.requests = 0
        self.rate_limited = 0
        self.waited = 0.0

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) *
                               self._per_second)
            self._stamp = now

    async def acquire(self) -> None:
        """Wait for a turn to send one request."""
        async with self._lock:
            while True:
                now = self._clock()
                if now < self._paused_until:
                    remaining = self._paused_until - now
                    if remaining > self._max_wait:
                        raise RateLimitedError(
                            f"Webex rate limit: asked to wait {remaining:.0f}s "
                            f"({self._pause_reason}), more than the {self._max_wait:.0f}s "
                            "certfleet waits; run again later or with another token"
                        )
                    await self._sleep(remaining)
                    self.waited += remaining
                    continue
                self._refill(now)
                if self._tokens >= 1.0 - 1e-9:  # float rounding must not cost a sleep
                    self._tokens = max(self._tokens - 1.0, 0.0)
                    self.requests += 1
                    return
                wait = (1.0 - self._tokens) / self._per_second
                await self._sleep(wait)
                self.waited += wait

    def pause(self, seconds: float, reason: str = "") -> None:
        """A 429 came back: nobody sends for ``seconds``; the bucket starts empty after."""
        self.rate_limited += 1
        until = self._clock() + max(seconds, 0.0)
        if until > self._paused_until:
            self._paused_until = until
            self._pause_reason = reason or "HTTP 429"
        self._tokens = 0.0
        self._stamp = max(self._stamp, self._paused_until)

    def slow_down(self, rate_per_minute: float) -> None:
        """Lower the rate (never raise it): devices sharing a token but asking for
        different rates get the most careful one."""
        if 0 < rate_per_minute < self.rate_per_minute:
            self._refill(self._clock())
            self.rate_per_minute = rate_per_minute
            self._per_second = rate_per_minute / 60.0

    def stats(self) -> dict[str, float]:
        return {"requests": self.requests, "rate_limited": self.rate_limited,
                "waited_s": round(self.waited, 3)}


# ------------------------------------------------------------------- shared resources


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
        proxy = proxy_for(base_url)
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


# ------------------------------------------------------------------------ HTTP layer


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
        if not self.same_origin(url):
            raise BadReplyError(f"refused to send the Webex token to {url}: not the API at "
                                f"{self.base_url}")
        headers = {
            "Authorization": f"Bearer {self._token.reveal()}",
            "Accept": "application/json",
            "User-Agent": _USER_AGENT,
        }
        content: bytes | None = None
        if json_body is not None:
            content = json.dumps(json_body).encode()
            headers["Content-Type"] = content_type
        attempt = 0
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
                error = self._map_exception(exc)
                sent = not isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout,
                                            httpx.PoolTimeout))
                retryable = not isinstance(error, TlsVerifyError) and (idempotent or not sent)
                if sent:
                    self._login.lost()
                    if not self._login.may_resend:
                        if retryable:
                            error.message += NOT_RESENT
                        retryable = False
                else:
                    self._login.no_verdict()
                if retryable and attempt + 1 < self._retry.attempts:
                    await self._sleep(self._retry.delay(attempt))
                    attempt += 1
                    continue
                raise error from None
            except BaseException:
                self._login.lost()  # cancelled with the request out
                raise
            if exchange is not None:
                exchange.http_status = response.status_code
            status = response.status_code
            if status == 401:
                self._login.refused("Webex refused the access token (HTTP 401)")
            elif status == 429 or status >= 500:
                self._login.no_verdict()
            else:
                self._login.accepted()
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
            if status in _RETRY_STATUSES and idempotent and attempt + 1 < self._retry.attempts:
                delay = self._retry.delay(attempt)
                retry_after = response.headers.get("Retry-After", "").strip()
                if retry_after.isdigit():
                    delay = max(delay, min(float(retry_after), self._retry.cap * 4))
                await self._sleep(delay)
                attempt += 1
                continue
            return response

    def _map_exception(self, exc: httpx.HTTPError) -> DeviceError:
        where = self.base_url
        cause = exc.__cause__
        text = redact(str(exc) or type(exc).__name__)  # it may quote the Authorization header
        if isinstance(exc, httpx.ConnectError):
            verify_failed = isinstance(cause, PinMismatch) or any(
                marker in text for marker in ("CERTIFICATE_VERIFY_FAILED",
                                              "certificate verify failed", "Hostname mismatch"))
            if verify_failed:
                return TlsVerifyError(
                    f"TLS certificate of the Webex API at {where} did not verify against "
                    f"{self._verify or 'the system store'}: {text}; fix api_verify: rather "
                    "than turning checks off"
                )
            return UnreachableError(f"cannot connect to the Webex API at {where}: {text}")
        if isinstance(exc, httpx.ConnectTimeout):
            return UnreachableError(f"connection to the Webex API at {where} timed out")
        if isinstance(exc, httpx.TimeoutException):
            return TimeoutError_(f"{type(exc).__name__} talking to the Webex API at {where}")
        return TransportError(f"connection to the Webex API at {where} broke: {text}")

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


def _json(response: httpx.Response, what: str) -> dict[str, Any]:
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
    return data


# ---------------------------------------------------------------------- normalising


def _leaf(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if value is None:
        return ""
    return str(value)


def normalise(value: Any, depth: int = 0) -> Any:
    """Cloud JSON → the local transport's shapes: leaves ``str``, structures ``dict``, arrays
    ``list`` (the cloud's ``id`` of array items, like putxml's ``item=``, is dropped)."""
    if depth > MAX_JSON_DEPTH and isinstance(value, dict | list):
        raise BadReplyError(f"refused a Webex reply nested more than {MAX_JSON_DEPTH} deep")
    if isinstance(value, dict):
        if value and all(isinstance(k, str) and k.isdigit() for k in value):
            return [normalise(value[k], depth + 1) for k in sorted(value, key=int)]
        return {str(k): normalise(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        items: list[Any] = []
        for item in value:
            if isinstance(item, dict) and "id" in item:
                item = {k: v for k, v in item.items() if k != "id"}
            items.append(normalise(item, depth + 1))
        return items
    return _leaf(value)


def _child(data: Any, name: str) -> Any:
    if not isinstance(data, dict):
        return None
    if name in data:
        return data[name]
    lowered = name.lower()
    return next((v for k, v in data.items() if isinstance(k, str) and k.lower() == lowered),
                None)


def _index(data: Any, index: int) -> Any:
    if isinstance(data, list):
        for item in data:
            if isinstance(item, dict) and str(item.get("id", "")) == str(index):
                return item
        return data[index - 1] if 0 < index <= len(data) and not any(
            isinstance(i, dict) and "id" in i for i in data) else None
    if isinstance(data, dict):
        if str(index) in data:
            return data[str(index)]
        return data if index == 1 else None  # a single item given as a structure
    return None


def _descend(data: Any, path: Sequence[str | int]) -> Any:
    for part in path:
        data = _index(data, part) if isinstance(part, int) else _child(data, part)
        if data is None:
            return None
    return data


_KEY_PART = re.compile(r"([^.\[\]]+)(?:\[(\d+)\])?")


def _config_tree(items: Mapping[str, Any], prefix: str) -> Any:
    """Device Configurations ``items`` under ``prefix`` → the nested tree (leaf: its value)."""
    lowered = prefix.lower()
    tree: dict[str, Any] = {}
    for key, item in items.items():
        value = _config_value(item)
        if key.lower() == lowered:
            return value
        if not key.lower().startswith(lowered + "."):
            continue
        rest = key[len(prefix) + 1:]
        node: Any = tree
        parts = rest.split(".")
        for position, part in enumerate(parts):
            match = _KEY_PART.fullmatch(part)
            if match is None:
                break
            name, index = match.group(1), match.group(2)
            last = position == len(parts) - 1
            if index is not None:
                seq = node.setdefault(name, [])
                if not isinstance(seq, list):
                    break
                while len(seq) < int(index):
                    seq.append({})
                if last:
                    seq[int(index) - 1] = value
                else:
                    node = seq[int(index) - 1]
            elif last:
                node[name] = value
            else:
                node = node.setdefault(name, {})
                if not isinstance(node, dict):
                    break
    return tree or None


def _config_value(item: Any) -> str:
    if not isinstance(item, dict):
        return _leaf(item)
    if "value" in item:
        return _leaf(item["value"])
    sources = item.get("sources") if isinstance(item.get("sources"), dict) else {}
    for source in ("configured", "default"):
        entry = sources.get(source) if isinstance(sources, dict) else None
        if isinstance(entry, dict) and entry.get("value") is not None:
            return _leaf(entry["value"])
    return ""


@dataclass(frozen=True)
class _ConfigInfo:
    """What a configuration read said about one key: its type and whether it may be set."""

    kind: str | None  # JSON Schema type of valueSpace: string, integer, number, boolean
    enum: tuple[str, ...]
    editable: bool
    reason: str

    @classmethod
    def of(cls, item: Any) -> _ConfigInfo:
        kind: str | None = None
        enum: tuple[str, ...] = ()
        editable, reason = True, ""
        if isinstance(item, dict):
            space = item.get("valueSpace")
            if isinstance(space, dict):
                kind = space.get("type") if isinstance(space.get("type"), str) else None
                if isinstance(space.get("enum"), list):
                    enum = tuple(_leaf(v) for v in space["enum"])
            sources = item.get("sources")
            configured = sources.get("configured") if isinstance(sources, dict) else None
            rules = configured.get("editability") if isinstance(configured, dict) else None
            if isinstance(rules, dict):
                flag = rules.get("isEditable", rules.get("editable", True))
                editable = flag is not False
                reason = str(rules.get("reason") or "")
        return cls(kind, enum, editable, reason)

    def coerce(self, key: str, value: str) -> Any:
        """The JSON value Webex wants for ``value`` (native types: 50, not "50")."""
        if self.enum and value not in self.enum:
            match = next((e for e in self.enum if e.lower() == value.lower()), None)
            if match is None:
                raise ParameterError(
                    f"{key}: {value!r} is not one of {', '.join(self.enum)}", reason="value"
                )
            value = match
        try:
            if self.kind == "integer":
                return int(value)
            if self.kind == "number":
                return float(value)
        except ValueError:
            raise ParameterError(f"{key}: {value!r} is not a {self.kind}") from None
        if self.kind == "boolean":
            if value.lower() in ("true", "on", "1"):
                return True
            if value.lower() in ("false", "off", "0"):
                return False
            raise ParameterError(f"{key}: {value!r} is not true or false")
        return value


# -------------------------------------------------------------------------- transport

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
            raise ValueError(f"device {device.name} has no device_id")
        self.device = device
        self.device_id = device.device_id
        self._api = api
        self._recorder = recorder
        self._checked = False
        self._permissions: tuple[str, ...] = ()
        self._config: dict[str, _ConfigInfo] = {}
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
            data = _json(response, "the device lookup")
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
            name = _dotted(path, "command")
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
            data = _json(response, f"command {name}")
            result = data.get("result", {})
            if result is None:
                result = {}
            if not isinstance(result, dict):
                raise BadReplyError(f"the result of {name} is not a structure")
            _raise_in_band(result, name)
            normalised: dict[str, Any] = normalise(result)
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
            raise ValueError(f"get needs a Status or Configuration path, not {path!r}")
        if path[0] == "Configuration":
            return await self._read_configuration(path)
        expression = _dotted(path[1:], "status")
        exchange = Exchange(kind="get", path="/".join(str(p) for p in path))

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
            data = _json(response, f"status {expression}")
            result = data.get("result")
            if isinstance(result, dict) and set(result) == {"Status"}:
                result = result["Status"]
            found = _descend(result, path[1:])
            return None if found is None else normalise(found)

        return await self._run(exchange, call)

    async def _config_items(self, exchange: Exchange, key: str) -> dict[str, Any]:
        response = await self._api.send(
            "GET", self._api.url("/v1/deviceConfigurations"), exchange=exchange,
            idempotent=True, params=[("deviceId", self.device_id), ("key", key)],
        )
        if response.status_code in (400, 404):
            return {}  # an unknown key: read as "no such node", like getxml
        self._api.raise_for_status(response, f"configuration {key}")
        items = _json(response, f"configuration {key}").get("items")
        if not isinstance(items, dict):
            return {}
        for name, item in items.items():
            self._config[name.lower()] = _ConfigInfo.of(item)
        return items

    async def _read_configuration(self, path: Sequence[str | int]) -> Any:
        key = config_key(path[1:])
        exchange = Exchange(kind="get", path="/".join(str(p) for p in path))

        async def call() -> Any:
            items = await self._config_items(exchange, key + ".*")
            if not items:  # a leaf: a wildcard matches only what is below a node
                items = await self._config_items(exchange, key)
            return _config_tree(items, key) if items else None

        return await self._run(exchange, call)

    async def configure(self, path: Sequence[str | int], value: str) -> None:
        key = config_key(path)
        secret = bool(path) and str(path[-1]) in SECRET_PARAMS
        exchange = Exchange(kind="configure", path="/".join(str(p) for p in path),
                            params={"value": "********" if secret else value})

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
        started = time.perf_counter()
        try:
            result = await call()
            exchange.ok = True
            return result
        except DeviceError as exc:
            exchange.ok = False
            exchange.error = exc.message
            raise exc.with_context(device=self.device.name, xpath=exchange.path) from None
        finally:
            exchange.duration_ms = (time.perf_counter() - started) * 1000
            if self._recorder is not None:
                self._recorder(exchange)


def _raise_in_band(result: Mapping[str, Any], name: str) -> None:
    """A device error carried in a 200 (not seen, not ruled out: reference "not confirmed" 9)."""
    status = result.get("status", result.get("Status"))
    if not isinstance(status, str) or status.lower() in ("ok", "success"):
        return
    reason = str(result.get("Reason") or result.get("reason") or status)
    if status.lower() == "parametererror":
        raise ParameterError(f"parameter error: {reason}", reason=reason)
    if status.lower() == "error":
        raise CommandError(reason, reason=reason, xpath=name.replace(".", "/"))
