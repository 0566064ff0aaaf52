"""roomsim's event loop: the one certfleet's runs take (``fleet/_loop.py``), so uvloop's when it
is installed (its transports and TLS records cost the simulator about a tenth less CPU per
request than asyncio's, measured on a rotation and a status run) and asyncio's otherwise, or
when ``CERTFLEET_EVENT_LOOP=asyncio`` says so. Either serves the same bytes on the wire."""

from __future__ import annotations

import asyncio

from certfleet.fleet._loop import loop_factory


def new_event_loop() -> asyncio.AbstractEventLoop:
    factory = loop_factory()
    return factory() if factory is not None else asyncio.new_event_loop()
