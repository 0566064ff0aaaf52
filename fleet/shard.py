"""fleet.shard — split a selection deterministically across N CI jobs (``--shard K/N``).

A device's shard depends only on its name (SHA-256), not on the inventory's order or size, so
adding a device never moves the others, and the N shards cover the selection exactly once.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from .errors import InputError
from .inventory import Device

__all__ = ["parse_shard", "shard_devices", "shard_of"]


def parse_shard(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise InputError(f"--shard takes K/N (e.g. 2/3), not {text!r}")
    k, n = int(match.group(1)), int(match.group(2))
    if n < 1 or not 1 <= k <= n:
        raise InputError(f"--shard {text}: K must be between 1 and N")
    return k, n


def shard_of(name: str, n: int) -> int:
    """1-based shard of a device name among ``n``."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % n + 1


def shard_devices(devices: Sequence[Device], spec: str) -> list[Device]:
    k, n = parse_shard(spec)
    return [d for d in devices if shard_of(d.name, n) == k]
