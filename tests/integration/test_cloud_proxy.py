"""The Webex API through an HTTP proxy (HTTPS_PROXY), as on a corporate network: a real
CONNECT proxy on loopback carries the cloud traffic, TLS stays end to end and verified,
devices reached on the local network never go through it, and NO_PROXY is honoured."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from certfleet.fleet.xapi.cloud import proxy_for


class ConnectProxy:
    """A minimal CONNECT-only proxy on 127.0.0.1 that records where each tunnel went."""

    def __init__(self) -> None:
        self.tunnels: list[str] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
            host, _, port = target.rpartition(":")
            if method != "CONNECT" or host not in ("127.0.0.1", "localhost"):
                writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                return
            self.tunnels.append(target)
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()

            async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
                with contextlib.suppress(ConnectionError, OSError):
                    while data := await src.read(65536):
                        dst.write(data)
                        await dst.drain()
                with contextlib.suppress(Exception):
                    dst.close()

            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    def __enter__(self) -> ConnectProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0), self._loop
        ).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[ConnectProxy]:
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    with ConnectProxy() as running:
        monkeypatch.setenv("HTTPS_PROXY", f"http://proxyuser:proxy-pass-771@127.0.0.1:"
                                          f"{running.port}")
        yield running


def test_cloud_calls_go_through_the_proxy_and_device_calls_do_not(
    proxy: ConnectProxy, tmp_path: Path, cli: Any
) -> None:
    from certfleet.roomsim import SimFleetThread

    with SimFleetThread(tmp_path / "sim", devices=3, cloud=True) as sim:
        # one inventory with the three devices twice: locally and through the cloud
        local = yaml.safe_load(sim.inventory_path.read_text())
        cloud = yaml.safe_load(sim.cloud_inventory_path.read_text())
        for name, entry in cloud["devices"].items():
            local["devices"][f"{name}-cloud"] = {
                "device_id": entry["device_id"], "transport": "cloud",
                **{k: cloud["defaults"][k] for k in ("api_url", "api_verify", "token")},
            }
        mixed = tmp_path / "mixed.yaml"
        mixed.write_text(yaml.safe_dump(local))
        result = cli("status", "-i", str(mixed), "-o", "json")
        assert result.exit_code == 0, result.output
        assert {d["outcome"] for d in result.json()["devices"]} == {"ok"}
        api = sim.cloud_url.removeprefix("https://")
        # every tunnel went to the cloud API, none to a device's own address
        assert proxy.tunnels and set(proxy.tunnels) == {api}
        assert "proxy-pass-771" not in result.output


def test_no_proxy_exempts_the_api_host(
    proxy: ConnectProxy, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cli: Any
) -> None:
    from certfleet.roomsim import SimFleetThread

    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with SimFleetThread(tmp_path / "sim", devices=2, cloud=True) as sim:
        result = cli("status", "-i", str(sim.cloud_inventory_path), "-o", "json")
        assert result.exit_code == 0, result.output
        assert proxy.tunnels == []


def test_proxy_for_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "https_proxy",
                 "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert proxy_for("https://webexapis.com") is None
    monkeypatch.setenv("HTTPS_PROXY", "127.0.0.1:3128")
    assert proxy_for("https://webexapis.com") == "http://127.0.0.1:3128"
    monkeypatch.setenv("NO_PROXY", ".webexapis.com,example.org")
    assert proxy_for("https://webexapis.com") is None
    assert proxy_for("https://api.example.net") == "http://127.0.0.1:3128"


def test_a_socks_or_https_proxy_is_refused_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    from certfleet.fleet.errors import InputError

    for name in ("NO_PROXY", "no_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "socks5://user:sekrit-99@127.0.0.1:1080")
    with pytest.raises(InputError) as caught:
        proxy_for("https://webexapis.com")
    assert "not an http:// proxy" in str(caught.value)
    assert "sekrit-99" not in str(caught.value)

