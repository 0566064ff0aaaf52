"""The benchmark's growth rows (issue 18, part 4): ``certfleet status`` on fleets of growing size
(1,000, 5,000 and 10,000 devices by default, each its own roomsim), so the curve shows how the
client's cost grows with the fleet: wall time, CPU and peak RSS per device at every size.

Nothing may grow faster than linearly: the per-device CPU and RSS at the largest size must be
within 10 % of the figures at the smallest (a ratio <= 1.10; below 1 means a fixed cost, such as
the interpreter's own ~60 MB, spread over more devices). Because that fixed part flatters the
per-device RSS of large fleets, the RSS is also given as the increment per added device between
consecutive sizes, which is what would rise if something were kept per device pair, per result
or per event.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

from benchlib import Row

if TYPE_CHECKING:
    from fleet_bench import Bench

LIMIT = 1.10


def growth_row(bench: Bench, size: int) -> Row:
    def measure(row: Row) -> None:
        bench.status_on_new_fleet(row, size, f"growth-{size}", sample_tree=True)

    return bench.record(Row(f"growth-{size}", f"growth: status, {size} devices"), measure)


def growth_figures(rows: dict[str, Row], sizes: list[int], target: Any,
                   ratios: dict[str, Any]) -> None:
    """Per-device ratios largest/smallest with pass/miss, and the RSS increments."""
    got = [(s, rows[f"growth-{s}"]) for s in sizes
           if f"growth-{s}" in rows and rows[f"growth-{s}"].ok]
    if len(got) < 2:
        for what in ("CPU", "peak RSS"):
            target(f"growth: {what} per device, largest / smallest <= 1.10", "<= 1.10", None,
                   None, "needs at least two growth sizes")
        return
    (small, lo), (large, hi) = got[0], got[-1]
    def rss(row: Row) -> float | None:
        # sampled from /proc: the client's own pages. ru_maxrss (the table's column) can be
        # the benchmark's own size instead: Linux carries the parent's RSS at fork into the
        # child's maximum across exec, and this process grows with every document it reads
        return row.extra.get("peak_tree_rss_mb") or row.peak_rss_mb

    for what, value in (("CPU", lambda r: r.cpu_s), ("peak RSS", rss),
                        ("wall", lambda r: r.wall_s)):
        a, b = value(lo), value(hi)
        if not a or not b:
            continue
        ratio = (b / large) / (a / small)
        ratios[f"growth {what} per device {large}/{small}"] = round(ratio, 3)
        if what != "wall":
            target(f"growth: {what} per device, {large} / {small} <= 1.10", "<= 1.10", ratio,
                   ratio <= LIMIT, "per device: the whole figure / N" + (
                       "; RSS sampled from /proc" if what == "peak RSS" else ""))
    for (s1, r1), (s2, r2) in itertools.pairwise(got):
        m1, m2 = rss(r1), rss(r2)
        if m1 and m2:
            ratios[f"growth RSS MB per added device {s1}->{s2}"] = round((m2 - m1) / (s2 - s1), 5)
