"""Read a py-spy ``--format raw`` profile (collapsed stacks) and print where the CPU went:
the top functions by own and by inclusive time, and every sample put in one cost centre
(TLS, event loop, HTTP client, XML, journal, JSON output, ...) by its innermost frame that
belongs to one. Used for the analysis in bench/results/README.md (issue 18, parts 2 and 3).

    py-spy record -r 250 -f raw -o status.raw -- python -m certfleet.cli.main status -i inv.yaml ...
    python bench/profile_top.py status.raw [--devices N] [--top 25]

On a machine busy with other work py-spy's figures are wall time on a runnable thread, not CPU
(a preempted thread is sampled where it stands). ``--cpu-profile OUT -- ARGS`` runs a command
(``python -m ARGS...``) under cProfile timed by ``time.process_time`` — CPU only, whatever the
load, at cProfile's overhead — and ``profile_top.py OUT.prof`` reads it the same way, each
function's own time charged to the cost centre of its file (builtins by their names).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

#: (cost centre, patterns on "function (file:line)" frames), the first that matches wins;
#: a sample is charged to the innermost frame that matches any centre
CENTRES: list[tuple[str, tuple[str, ...]]] = [
    ("imports and start-up", ("<frozen importlib", "_call_with_frames_removed",
                              "(<frozen zipimport", "marshal.loads", "builtins.compile",
                              "builtins.__build_class__", "(<frozen")),
    ("TLS (handshakes, records)", ("(ssl.py", "(asyncio/sslproto.py", "'_ssl.")),
    ("journal (sqlite)", ("(fleet/journal.py", "(sqlite3/", "'sqlite3.")),
    ("JSON output", ("(json/", "(cli/machine_output.py", "(cli/render.py", "'_json.")),
    ("rich rendering", ("(rich/",)),
    ("XML build and parse", ("(xml/", "(fleet/xapi/_xml.py", "pyexpat", "ElementTree")),
    ("dates", ("(_strptime.py", "strptime")),
    ("x509 / keys (cryptography)", ("(cryptography/", "(fleet/pki/")),
    ("HTTP client", ("(fleet/xapi/_http.py", "(aiohttp/", "(httpx/", "(httpcore/", "(h11/",
                     "(multidict/", "(yarl/", "(http/")),
    ("event loop", ("(asyncio/", "(selectors.py", "'select.epoll", "'_socket.socket")),
    ("device exchange (fleet/xapi)", ("(fleet/xapi/",)),
    ("plans", ("(fleet/plans/",)),
    ("runner, results, events", ("(fleet/runner.py", "(fleet/results.py", "(fleet/hooks.py")),
    ("inventory", ("(fleet/inventory.py",)),
    ("CLI (typer, click, cli/)", ("(typer/", "(click/", "(cli/")),
    ("other fleet/", ("(fleet/",)),
]

#: a worker thread's innermost frame when it is blocked, not working: py-spy's idle detection
#: misses these waits in threads (a thread pool's queue, the process pool's management thread)
THREAD_WAITS = ("Condition.wait (", "_worker (concurrent/futures/thread.py)",
                ".select (selectors.py)", "read_signed (", "Queue.get (", "_wait_for_tstate_lock (")

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def short(frame: str) -> str:
    """`func (path:line)` without the line number (py-spy already shortens the path)."""
    match = _FRAME.match(frame.strip())
    return f"{match.group('func')} ({match.group('file')})" if match else frame.strip()


def centre_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, patterns in CENTRES:
            if any(p in frame for p in patterns):
                return name
    return "other"


def cpu_profile(out: Path, module_args: list[str]) -> int:
    """Run `python -m module_args` here under cProfile timed by process_time; write `out`."""
    import cProfile
    import runpy
    import time

    profiler = cProfile.Profile(time.process_time)
    sys.argv = module_args[:]
    code = 0
    profiler.enable()
    try:
        runpy.run_module(module_args[0], run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    finally:
        profiler.disable()
        profiler.dump_stats(str(out))
    return code


def read_pstats(path: Path) -> tuple[Counter[str], Counter[str], int]:
    """(own time per frame, cost centres, total) in microseconds of a cProfile file."""
    import os
    import pstats

    stats = pstats.Stats(str(path))
    own: Counter[str] = Counter()
    centres: Counter[str] = Counter()
    root = str(Path(__file__).resolve().parent.parent) + os.sep
    for (file, _, func), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = file.removeprefix(root)
        for anchor in ("site-packages/", "/lib/python3.11/"):
            if anchor in where:
                where = where.split(anchor, 1)[1]
        frame = f"{func} ({where})"
        micros = int(tottime * 1_000_000)
        own[frame] += micros
        centres[centre_of([frame])] += micros
    return own, centres, sum(own.values())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--cpu-profile"]:
        if len(argv) < 4 or argv[2] != "--":
            print("usage: profile_top.py --cpu-profile OUT.prof -- MODULE ARGS...",
                  file=sys.stderr)
            return 2
        return cpu_profile(Path(argv[1]), argv[3:])
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("raw", type=Path)
    parser.add_argument("--devices", type=int, help="divide the CPU seconds by N devices")
    parser.add_argument("--rate", type=float, default=250.0, help="py-spy's samples/s (250)")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--in-run", action="store_true",
                        help="keep only samples under asyncio.run (the devices' work), leaving "
                             "out start-up (imports, CLI parsing) and the final output")
    args = parser.parse_args(argv)
    if args.raw.suffix == ".prof":
        return report_pstats(args)
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    centres: Counter[str] = Counter()
    total = waits = 0
    for line in args.raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [short(f) for f in stack.split(";") if f and not f.startswith("process ")
                  and not f.startswith("thread ")]
        if not frames:
            continue
        if not frames[0].startswith("_run_module_as_main") and any(
                w in frames[-1] for w in THREAD_WAITS):
            waits += count
            continue
        if args.in_run and not any(f.startswith("Runner.run (asyncio/runners.py") for f in frames):
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
        centres[centre_of(frames)] += count
    if not total:
        print(f"{args.raw}: no samples", file=sys.stderr)
        return 1
    seconds = total / args.rate
    head = (f"{args.raw.name}: {total} samples at {args.rate:g}/s = {seconds:.2f} s on CPU"
            + (" in asyncio.run" if args.in_run else ""))
    if args.devices:
        head += f", {seconds / args.devices * 1000:.2f} ms per device ({args.devices} devices)"
    print(head + (f" ({waits} samples of threads blocked in a wait left out)" if waits else ""))
    print("-- cost centres (each sample charged to its innermost frame in one)")
    for name, count in centres.most_common():
        per = f"  {count / args.rate / args.devices * 1000:6.3f} ms/dev" if args.devices else ""
        print(f"  {count / total:6.1%}{per}  {name}")
    print(f"-- top {args.top} own time")
    for frame, count in own.most_common(args.top):
        print(f"  {count / total:6.1%}  {frame}")
    print(f"-- top {args.top} inclusive, certfleet code (fleet/, cli/)")
    ours = [(f, c) for f, c in inclusive.most_common() if "(fleet/" in f or "(cli/" in f]
    for frame, count in ours[: args.top]:
        print(f"  {count / total:6.1%}  {frame}")
    return 0


def report_pstats(args: argparse.Namespace) -> int:
    own, centres, total = read_pstats(args.raw)
    if not total:
        print(f"{args.raw}: empty profile", file=sys.stderr)
        return 1
    seconds = total / 1e6
    head = f"{args.raw.name}: cProfile, process CPU {seconds:.2f} s (cProfile overhead included)"
    if args.devices:
        head += f", {seconds / args.devices * 1000:.2f} ms per device ({args.devices} devices)"
    print(head)
    print("-- cost centres (each function's own CPU time charged to its file's centre)")
    for name, micros in centres.most_common():
        per = f"  {micros / 1000 / args.devices:6.3f} ms/dev" if args.devices else ""
        print(f"  {micros / total:6.1%}{per}  {name}")
    print(f"-- top {args.top} own CPU time")
    for frame, micros in own.most_common(args.top):
        print(f"  {micros / total:6.1%}  {frame}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
