"""Another process on the same Webex token: the benchmark's ``cloud-shared`` row runs this
beside certfleet to see what certfleet does when it is not the token's only user.

    python bench/baselines/cloud_hammer.py --api-url https://127.0.0.1:PORT \
        --token-file cloud-token --api-verify sim-ca.pem --rate PER_MINUTE

It sends ``GET /v1/devices?max=1`` at a steady ``--rate`` a minute (a poller, say a dashboard
that lists devices; open loop, so slow answers do not slow it), User-Agent ``bench-hammer/1``,
and behaves as a decent client does: after a 429 it sends nothing new for the ``Retry-After``
seconds (15 when there is none), then resumes its schedule from then on (no catching up).
It stops at the end of stdin or on SIGTERM and prints one JSON line:
``{"requests": n, "rate_limited": n, "waited_s": s}``.
Loopback only: an API URL whose host is not a loopback address is refused.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import signal
import ssl
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx


async def hammer(args: argparse.Namespace, stop: asyncio.Event) -> dict[str, float]:
    """Open loop: one request every 60/rate s whatever the answers take (up to 64 in flight),
    so a slow answer does not slow the poller; a 429 holds the schedule for its Retry-After."""
    token = args.token_file.read_text().strip()
    context = ssl.create_default_context(cafile=str(args.api_verify))
    headers = {"Authorization": f"Bearer {token}", "User-Agent": "bench-hammer/1",
               "Accept": "application/json"}
    interval = 60.0 / args.rate
    counts = {"requests": 0, "rate_limited": 0, "waited_s": 0.0}
    state = {"next_at": time.monotonic()}
    slots = asyncio.Semaphore(64)

    async def one(client: httpx.AsyncClient) -> None:
        try:
            response = await client.get("/v1/devices", params={"max": 1})
        finally:
            slots.release()
        counts["requests"] += 1
        if response.status_code == 429:
            counts["rate_limited"] += 1
            text = response.headers.get("Retry-After", "")
            wait = float(text) if text.isdigit() else 15.0
            resume = time.monotonic() + wait
            if resume > state["next_at"]:
                counts["waited_s"] += resume - max(state["next_at"], time.monotonic())
                state["next_at"] = resume

    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=args.api_url, verify=context, headers=headers,
                                 timeout=30.0, limits=limits) as client:
        tasks: set[asyncio.Task[None]] = set()
        while not stop.is_set():
            delay = state["next_at"] - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                continue  # the schedule may have moved meanwhile (a 429)
            state["next_at"] += interval
            await slots.acquire()
            task = asyncio.get_running_loop().create_task(one(client))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=30)
    return counts


async def main_async(args: argparse.Namespace) -> dict[str, float]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def watch_stdin() -> None:
        while await reader.readline():
            pass
        stop.set()

    watcher = loop.create_task(watch_stdin())
    try:
        return await hammer(args, stop)
    finally:
        watcher.cancel()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--token-file", type=Path, required=True)
    parser.add_argument("--api-verify", type=Path, required=True)
    parser.add_argument("--rate", type=float, required=True, help="requests a minute")
    args = parser.parse_args()
    host = urlsplit(args.api_url).hostname or ""
    if not ipaddress.ip_address(host).is_loopback:
        parser.error(f"{host} is not a loopback address; refusing")
    if args.rate <= 0:
        parser.error("--rate must be above 0")
    counts = asyncio.run(main_async(args))
    print(json.dumps({**counts, "waited_s": round(counts["waited_s"], 3)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
