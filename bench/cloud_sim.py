"""roomsim's fleet with its simulated Webex cloud API, for the benchmark's cloud rows.

    python bench/cloud_sim.py --devices N --state DIR --cloud-rate R [--tokens T]

Serves N devices on 127.0.0.1 and the cloud API allowing R requests per token per minute
(roomsim's sliding 60 s window, 429 with Retry-After above it), exactly as
``python -m certfleet.roomsim serve --cloud --cloud-rate R`` does, writing
``DIR/inventory-cloud.yaml``.
With ``--tokens T`` the API also accepts T-1 more bearer tokens (``DIR/cloud-token-2`` ...,
mode 0600), each limited on its own as another user's would be: N shards with N tokens.

Prints ``ready`` on stdout once everything listens. Then reads commands on stdin, one a line:
``traffic`` prints one JSON line, the cloud's answers so far per token number, User-Agent and
HTTP status (what roomsim itself counted: the requests a client made and the 429s it caused).
End of stdin, SIGTERM or SIGINT stop it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from certfleet.roomsim.fleet import SimFleet  # noqa: E402
from certfleet.roomsim.serve import serve  # noqa: E402


def token_path(state: Path, number: int) -> Path:
    """Token 1 is roomsim's own ``cloud-token``; the added ones are ``cloud-token-K``."""
    return state / ("cloud-token" if number == 1 else f"cloud-token-{number}")


async def control(fleet: SimFleet, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while not stop.is_set():
        line = await reader.readline()
        if not line:
            break
        if line.strip() == b"traffic" and fleet.cloud is not None:
            print(json.dumps(fleet.cloud.traffic()), flush=True)
        else:
            print(json.dumps({"error": f"unknown command {line.strip()[:40]!r}"}), flush=True)
    stop.set()


async def run(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    def ready(fleet: SimFleet, inventory: Path) -> None:
        assert fleet.cloud is not None
        for number in range(2, args.tokens + 1):
            path = token_path(args.state, number)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(fleet.cloud.add_token() + "\n")
        tasks.append(asyncio.get_running_loop().create_task(control(fleet, stop)))
        print("ready", flush=True)

    try:
        await serve(args.devices, args.state, request_delay=args.request_delay, ready=ready,
                    stop=stop, cloud=True, cloud_rate_per_minute=args.cloud_rate)
    finally:
        for task in tasks:
            task.cancel()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--devices", type=int, required=True)
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--cloud-rate", type=int, required=True, metavar="PER_MINUTE")
    parser.add_argument("--tokens", type=int, default=1)
    parser.add_argument("--request-delay", type=float, default=0.0)
    args = parser.parse_args(argv)
    if args.tokens < 1:
        parser.error("--tokens must be at least 1")
    args.state.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
