"""certfleet's key generation throughput: ``fleet.pki.keys.KeyFactory`` (a worker process per
core), asked for N keys at once from an asyncio loop, the way ``rotate`` asks for them.

    python bench/keygen_certfleet.py --keys 1000 [--kind rsa-2048]

The pool is started and warmed with one key per worker first (not counted); then the N keys
are timed. Prints one JSON line: keys, kind, workers, warmup_s, wall_s, keys_per_s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from certfleet.fleet.pki.keys import KeyFactory


async def measure(keys: int, kind: str) -> dict[str, float | int | str]:
    async with KeyFactory() as factory:
        started = time.perf_counter()
        await asyncio.gather(*(factory.generate(kind) for _ in range(factory.workers)))
        warmup = time.perf_counter() - started
        started = time.perf_counter()
        made = await asyncio.gather(*(factory.generate(kind) for _ in range(keys)))
        wall = time.perf_counter() - started
        workers = factory.workers
    if len(made) != keys:
        raise SystemExit(f"asked for {keys} keys, got {len(made)}")
    return {"keys": keys, "kind": kind, "workers": workers, "warmup_s": round(warmup, 4),
            "wall_s": round(wall, 4), "keys_per_s": round(keys / wall, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--kind", default="rsa-2048")
    args = parser.parse_args(argv)
    if args.keys < 1:
        parser.error("--keys must be at least 1")
    print(json.dumps(asyncio.run(measure(args.keys, args.kind))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
