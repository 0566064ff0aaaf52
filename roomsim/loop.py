"""The one place that picks roomsim's event loop: uvloop's when it is installed (its
transports and TLS records cost the simulator about a tenth less CPU per request than
asyncio's, measured on a rotation and a status run), asyncio's otherwise. Either serves
the same bytes on the wire; uvloop is optional, never required."""

from __future__ import annotations

import asyncio


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
