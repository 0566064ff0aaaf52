"""A small fake of :class:`fleet.xapi._http.HttpClient` for the local transport's unit tests:
the production :class:`~fleet.xapi.local.LocalTransport` sits on top of it, the handler
answers each request with an :class:`HttpReply` or raises the :class:`HttpFailure` the real
client would (the real client itself is tested over real sockets in test_http_client.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from certfleet.fleet.xapi._http import HttpReply


@dataclass
class Sent:
    """One request as the transport made it (header names lower-case)."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    query: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return urlsplit(self.url).path


Handler = Callable[[Sent], HttpReply]


def reply(status: int, body: bytes = b"", *, headers: Mapping[str, str] | None = None,
          cookies: Mapping[str, str] | None = None) -> HttpReply:
    return HttpReply(status, {k.lower(): v for k, v in (headers or {}).items()},
                     dict(cookies or {}), body)


class FakeHttp:
    """:class:`HttpClient` whose answers come from ``handler``; every request is kept."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.sent: list[Sent] = []
        self.closed = False

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
        sent = Sent(method, url, {k.lower(): v for k, v in headers.items()}, body or b"",
                    dict(query or {}))
        self.sent.append(sent)
        return self.handler(sent)

    async def aclose(self) -> None:
        self.closed = True
