"""roomsim building blocks without sockets: command registry and parameters, rate limiter."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import xml.etree.ElementTree as ET
from typing import Any, cast

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from certfleet.roomsim.certs import device_date, openssl_oneline, serial_hex
from certfleet.roomsim.commands import Args, CommandContext, CommandRegistry, Param, run_commands
from certfleet.roomsim.limits import QueueFull, RateLimiter


def run(registry: CommandRegistry, document: str) -> ET.Element:
    context = CommandContext(device=cast(Any, None))
    return run_commands(registry, context, ET.fromstring(document))


def test_array_parameters_follow_item_order_and_limits():
    registry = CommandRegistry()
    seen: list[list[str]] = []

    @registry.register("Test/Things/Do", Param("SanDns", max_items=3, max_len=8))
    def do(ctx: CommandContext, args: Args) -> None:
        seen.append(args.get_list("SanDns"))

    ok = run(
        registry,
        '<Command><Test><Things><Do><SanDns item="2">b</SanDns><SanDns item="1">a</SanDns>'
        "</Do></Things></Test></Command>",
    )
    assert ok.find("ThingsDoResult").get("status") == "OK"
    assert seen == [["a", "b"]]

    too_many = run(
        registry,
        "<Command><Test><Things><Do>"
        + "<SanDns>x</SanDns>" * 4
        + "</Do></Things></Test></Command>",
    )
    assert too_many.find("ThingsDoResult").get("status") == "ParameterError"
    with pytest.raises(ValueError):
        registry.register("Test/Things/Do")(do)


def test_several_commands_in_one_document():
    registry = CommandRegistry()
    registry.register("A/One")(lambda ctx, args: None)
    registry.register("A/Two")(lambda ctx, args: [ET.Element("Value")])
    reply = run(registry, '<Command><A><One/><Two/><Three command="True"/></A></Command>')
    assert [c.tag for c in reply] == ["AOneResult", "ATwoResult", "Result"]
    assert reply.find("ATwoResult/Value") is not None
    assert reply.find("Result").findtext("XPath") == "/A/Three"


async def test_rate_limiter_paces_and_refuses():
    limiter = RateLimiter(rate=20.0, queue=2, burst=1)
    started = time.monotonic()
    results = await asyncio.gather(*(limiter.acquire() for _ in range(4)), return_exceptions=True)
    assert [isinstance(r, QueueFull) for r in results] == [False, False, False, True]
    assert 0.08 <= time.monotonic() - started < 0.5  # two waited 1/20 s each, in turn


def test_device_formats():
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Let's Encrypt"),
            x509.NameAttribute(NameOID.COMMON_NAME, "R3"),
        ]
    )
    assert openssl_oneline(name) == "/C=US/O=Let's Encrypt/CN=R3"
    moment = dt.datetime(2023, 8, 8, 3, 4, 26, tzinfo=dt.UTC)
    assert device_date(moment) == "Aug 08 03:04:26 2023 GMT"
    assert serial_hex(0x3AAD99) == "3AAD99" and serial_hex(0x3AAD9) == "03AAD9"
