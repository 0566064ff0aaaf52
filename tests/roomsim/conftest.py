"""Fixtures for roomsim tests: a started simulated fleet and a tiny xAPI client built on
plain httpx + ssl (deliberately not fleet/ code), verifying TLS against the sim CA."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from certfleet.roomsim import SimFleet


class Xapi:
    """Talks to one simulated device the way a script would."""

    def __init__(self, sim: SimFleet, name: str, **client_kwargs: Any) -> None:
        device = sim.devices[name]
        self.base = f"https://127.0.0.1:{device.port}"
        self.context = ssl.create_default_context(cafile=str(sim.ca_pem_path))
        client_kwargs.setdefault("auth", ("admin", sim.password))
        self.client = httpx.AsyncClient(
            base_url=self.base, verify=self.context, timeout=10.0, **client_kwargs
        )
        self.port = device.port

    async def putxml(self, body: str | bytes) -> ET.Element:
        response = await self.client.post(
            "/putxml", content=body, headers={"Content-Type": "text/xml"}
        )
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "text/xml; charset=UTF-8"
        return ET.fromstring(response.content)

    async def getxml(self, location: str) -> ET.Element:
        response = await self.client.get("/getxml", params={"location": location})
        assert response.status_code == 200, response.text
        return ET.fromstring(response.content)

    async def aclose(self) -> None:
        await self.client.aclose()


async def peer_sha1(port: int, context: ssl.SSLContext) -> str:
    """SHA-1 of the certificate a fresh TLS handshake to 127.0.0.1:port presents."""
    _reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
    return hashlib.sha1(der).hexdigest()


@pytest.fixture
def sim_factory(tmp_path: Path) -> Callable[..., SimFleet]:
    """Build fleets on tmp_path/state; fast limits unless a test asks otherwise."""

    def make(**kwargs: Any) -> SimFleet:
        defaults: dict[str, Any] = {
            "devices": 3,
            "basic_rate": 1000.0,
            "session_rate": 1000.0,
            "reboot_seconds": 0.3,
        }
        defaults.update(kwargs)
        return SimFleet(tmp_path / "state", **defaults)

    return make


@pytest.fixture
async def sim(sim_factory: Callable[..., SimFleet]) -> AsyncIterator[SimFleet]:
    fleet = sim_factory()
    await fleet.start()
    yield fleet
    await fleet.stop()


@pytest.fixture
async def xapi(sim: SimFleet) -> AsyncIterator[Xapi]:
    client = Xapi(sim, "room-001")
    yield client
    await client.aclose()


@pytest.fixture
async def xapi_for(sim: SimFleet) -> AsyncIterator[Callable[..., Xapi]]:
    """Factory for clients to other devices or with other credentials/cookies."""
    clients: list[Xapi] = []

    def make(name: str = "room-001", fleet: SimFleet | None = None, **kwargs: Any) -> Xapi:
        client = Xapi(fleet or sim, name, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
def tls_peer_sha1() -> Callable[[int, ssl.SSLContext], Any]:
    return peer_sha1
