"""The benchmark's cloud rows (issue 18): certfleet through roomsim's simulated Webex cloud API,
against the bound its per-token rate limit imposes.

The cloud allows R requests per token in any 60 s (a sliding window; 429 with Retry-After above
it). certfleet paces each token with a token bucket at the inventory's ``api_rate_per_minute``
C (here, as roomsim's own cloud inventory writes it, 7 % under R: the margin certfleet's
default 280 keeps under Webex's 300), with a burst of 10. So the least wall time a client that
keeps to its pace can take for q requests is q / C (the *rate bound*; the burst makes the real
floor 10 requests shorter), and no client at all can beat q / R over runs longer than the window.
The requests and the 429s are counted by roomsim itself, per token and User-Agent
(``CloudServer.traffic``), and checked against the calls certfleet's JSON reports. A run shorter
than the 60 s window cannot meet a 429 whatever the client does, so the full run is sized to
last longer than that.

cloud-push-ca   ``certfleet push-ca`` of a fresh CA to N cloud devices, one token; every device
                ``changed`` and the CA in every device's roomsim state.
cloud-status    ``certfleet status`` on the same devices, one token; every device ``ok``.
cloud-shard     S processes at once, ``certfleet --shard K/S push-ca`` each with its own token
                (roomsim's cloud gives every token its own window, as Webex gives every user
                one): the wall time of the slowest against the one-token cloud-push-ca row.
cloud-shared    cloud-push-ca again while another process (bench/baselines/cloud_hammer.py)
                polls the API with the same token at H a minute and honours Retry-After: what
                certfleet does then (429s met, waits, whether every device still completes).
                Reported, never a target: the token is not certfleet's alone.
"""

from __future__ import annotations

import json
import selectors
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from benchlib import BENCH, BenchError, Measured, Row, Sim, _proc_cpu, make_ca, run_measured

if TYPE_CHECKING:
    from fleet_bench import Bench

CERTFLEET_AGENT = "certfleet/"
HAMMER_AGENT = "bench-hammer/"
#: certfleet's pacer burst (fleet/xapi/cloud.py DEFAULT_BURST): requests that may leave at once
PACER_BURST = 10
#: a rate bound shorter than this is printed but not judged (start-up would dominate it)
SHORTEST_JUDGED_S = 20.0


class CloudSim(Sim):
    """bench/cloud_sim.py: roomsim with its cloud API, extra tokens, and a `traffic` command."""

    stdin = subprocess.PIPE

    def __init__(self, devices: int, state: Path, rate: int, tokens: int) -> None:
        super().__init__(devices, state, 0.0)
        self.rate = rate
        self.tokens = tokens

    def command(self) -> list[str]:
        return [sys.executable, str(BENCH / "cloud_sim.py"), "--devices", str(self.devices),
                "--state", str(self.state), "--cloud-rate", str(self.rate),
                "--tokens", str(self.tokens)]

    @property
    def cloud_inventory(self) -> Path:
        return self.state / "inventory-cloud.yaml"

    def token_path(self, number: int) -> Path:
        return self.state / ("cloud-token" if number == 1 else f"cloud-token-{number}")

    def traffic(self) -> list[dict[str, Any]]:
        """roomsim's count of the cloud's answers so far (token, agent, status, count)."""
        proc = self.proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("traffic\n")
        proc.stdin.flush()
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout=60):
            raise BenchError("the cloud simulator did not answer `traffic` within 60 s")
        answer = json.loads(proc.stdout.readline())
        if not isinstance(answer, list):
            raise BenchError(f"the cloud simulator answered `traffic` with {answer!r}")
        return answer


def traffic_delta(before: list[dict[str, Any]], after: list[dict[str, Any]], *,
                  token: int | None = None, agent: str = "") -> dict[str, int]:
    """Answers between two `traffic` readings, for one token (or all) and agents starting
    with `agent`: {"requests": all answers, "rate_limited": 429s, "other_errors": 4xx/5xx}."""

    def pick(rows: list[dict[str, Any]]) -> dict[int, int]:
        counts: dict[int, int] = {}
        for r in rows:
            if (token is None or r["token"] == token) and str(r["agent"]).startswith(agent):
                counts[r["status"]] = counts.get(r["status"], 0) + r["count"]
        return counts

    old, new = pick(before), pick(after)
    delta = {status: new.get(status, 0) - old.get(status, 0) for status in new}
    return {"requests": sum(delta.values()), "rate_limited": delta.get(429, 0),
            "other_errors": sum(c for s, c in delta.items() if s >= 400 and s != 429)}


class CloudRows:
    """Measures the cloud rows on one CloudSim; `bench` is fleet_bench's Bench."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        a = bench.args
        self.n: int = a.cloud_devices
        self.rate: int = a.cloud_rate
        self.client_rate: float = a.cloud_client_rate
        self.shards: int = a.cloud_shards
        self.hammer_rate: float = a.cloud_hammer_rate
        self.sim: CloudSim | None = None

    # ------------------------------------------------------------------ set-up

    def inventory(self, token: int) -> Path:
        """roomsim's cloud inventory, using token number `token`, paced at the client rate."""
        assert self.sim is not None
        path = self.bench.work / f"cloud-inventory-{token}.yaml"
        if not path.exists():
            data = yaml.safe_load(self.sim.cloud_inventory.read_text())
            host = data["defaults"]["api_url"].split("//", 1)[1].rsplit(":", 1)[0]
            if host not in ("127.0.0.1", "[::1]"):
                raise BenchError(f"cloud API at {host}: not a loopback address; refusing")
            data["defaults"]["token"] = f"file:{self.sim.token_path(token)}"
            data["defaults"]["api_rate_per_minute"] = self.client_rate
            path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def run(self) -> None:
        b = self.bench
        b.log(f"starting roomsim with {self.n} cloud devices, {self.rate} requests/min per "
              f"token, {1 + self.shards} tokens ...")
        sim = CloudSim(self.n, b.work / "sim-cloud", self.rate, 1 + self.shards)
        self.sim = sim
        outer, b.sim = b.sim, sim
        try:
            sim.start()
            b.log(f"cloud roomsim ready in {sim.start_s:.1f} s (pid {sim.pid})")
            single = b.record(Row("cloud-push-ca", "cloud push-ca, 1 token"), self.push_ca)
            b.record(Row("cloud-status", "cloud status, 1 token"), self.status)
            b.record(Row("cloud-shard", f"cloud push-ca, {self.shards} shards"),
                     lambda row: self.shard(row, single))
            b.record(Row("cloud-shared", "cloud push-ca, token shared"), self.shared)
        finally:
            sim.stop()
            b.sim, self.sim = outer, None

    # ------------------------------------------------------------------ rows

    def measure(self, row: Row, tag: str, verb_args: list[str], outcome: str,
                fingerprint: str | None, *, strict: bool = True) -> dict[str, Any]:
        """One certfleet run on token 1, with roomsim's traffic read before and after."""
        b, sim = self.bench, self.sim
        assert sim is not None
        before = sim.traffic()
        measured, doc, shown = b.certfleet(tag, [*verb_args, "-i", str(self.inventory(1))])
        after = sim.traffic()
        seen = traffic_delta(before, after, token=1, agent=CERTFLEET_AGENT)
        b.fill(row, measured, self.n, 0)
        row.parallel = None
        row.command = " ".join(shown)
        if strict:
            row.succeeded = b.check_outcomes(doc, measured, self.n, outcome)
            if fingerprint is not None:
                b.verify_cas(b.device_names(), fingerprint)
        self.rate_figures(row, doc, seen)
        return doc

    def rate_figures(self, row: Row, doc: dict[str, Any], seen: dict[str, int]) -> None:
        """The rate bound of the requests roomsim answered (429s excluded: they are not
        work), checked against the calls certfleet reported."""
        done = seen["requests"] - seen["rate_limited"]
        reported = sum(len(d.get("calls", [])) for d in doc.get("devices", []))
        row.requests_per_device = done / self.n
        row.ideal_s = done / (self.client_rate / 60)
        row.ideal_formula = (f"requests / client rate = {done} / ({self.client_rate:g}/min) "
                             f"= {row.ideal_s:.2f} s; at the server's {self.rate}/min: "
                             f"{done / (self.rate / 60):.2f} s")
        row.extra.update(
            server_rate_per_min=self.rate, client_rate_per_min=self.client_rate,
            requests_roomsim=done, requests_certfleet_json=reported,
            self_caused_429=seen["rate_limited"], other_errors=seen["other_errors"],
            bound_server_rate_s=round(done / (self.rate / 60), 3),
            bound_less_burst_s=round(max(0, done - PACER_BURST) / (self.client_rate / 60), 3),
        )
        if row.wall_s:
            row.extra["vs_server_rate"] = round(row.wall_s / (done / (self.rate / 60)), 4)

    def push_ca(self, row: Row) -> None:
        ca, fingerprint = make_ca("Bench cloud push-ca Root", self.bench.cas)
        self.measure(row, "cloud-push-ca", ["push-ca", str(ca)], "changed", fingerprint)
        row.status = "ok"

    def status(self, row: Row) -> None:
        self.measure(row, "cloud-status", ["status"], "ok", None)
        row.status = "ok"

    def shard(self, row: Row, single: Row) -> None:
        """S certfleet processes at once, shard K on token K+1 (its own window)."""
        b, sim = self.bench, self.sim
        assert sim is not None
        ca, fingerprint = make_ca("Bench cloud shard Root", b.cas)
        s = self.shards
        results: dict[int, tuple[Measured, dict[str, Any]] | BaseException] = {}

        def one(k: int) -> None:
            tag = f"cloud-shard-{k}"
            command = [sys.executable, "-m", "certfleet.cli.main", "--shard", f"{k}/{s}", "push-ca",
                       str(ca), "-i", str(self.inventory(k + 1)), "-o", "json"]
            env = {"CERTFLEET_JOURNAL": str(b.work / f"journal-{tag}.sqlite"), **b.secrets}
            try:
                measured = run_measured(command, b.work, tag, env=env)
                results[k] = (measured, measured.json(f"certfleet shard {k}/{s}"))
            except BaseException as exc:  # reported below, in this thread's stead
                results[k] = exc

        for k in range(1, s + 1):
            self.inventory(k + 1)
        before = sim.traffic()
        sim_cpu = _proc_cpu(sim.pid)
        started = time.perf_counter()
        threads = [threading.Thread(target=one, args=(k,)) for k in range(1, s + 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - started
        after = sim.traffic()
        sim_after = _proc_cpu(sim.pid)
        per_shard: list[dict[str, Any]] = []
        changed = 0
        bound = 0.0
        for k in range(1, s + 1):
            got = results[k]
            if isinstance(got, BaseException):
                raise BenchError(f"shard {k}/{s}: {got}")
            measured, doc = got
            entries = doc.get("devices", [])
            good = sum(1 for d in entries if d.get("outcome") == "changed")
            if measured.exit_code != 0 or good != len(entries):
                raise BenchError(f"shard {k}/{s}: {good}/{len(entries)} changed, exit "
                                 f"{measured.exit_code}")
            seen = traffic_delta(before, after, token=k + 1, agent=CERTFLEET_AGENT)
            done = seen["requests"] - seen["rate_limited"]
            bound = max(bound, done / (self.client_rate / 60))
            changed += good
            per_shard.append({"shard": f"{k}/{s}", "devices": len(entries),
                              "wall_s": round(measured.wall_s, 3),
                              "cpu_s": round(measured.cpu_s, 3), "requests": done,
                              "self_caused_429": seen["rate_limited"],
                              "peak_rss_mb": round(measured.peak_rss_mb, 1)})
        if changed != self.n:
            raise BenchError(f"the {s} shards changed {changed} devices of {self.n}")
        b.verify_cas(b.device_names(), fingerprint)
        row.devices, row.succeeded, row.wall_s = self.n, changed, wall
        row.cpu_s = sum(p["cpu_s"] for p in per_shard)
        row.peak_rss_mb = max(p["peak_rss_mb"] for p in per_shard)
        if sim_cpu is not None and sim_after is not None:
            row.sim_cpu_s = sim_after - sim_cpu
        total = sum(p["requests"] for p in per_shard)
        row.requests_per_device = total / self.n
        row.ideal_s = bound
        row.ideal_formula = (f"max over {s} shards of shard requests / client rate "
                             f"({self.client_rate:g}/min per token) = {bound:.2f} s")
        row.command = (f"certfleet --shard K/{s} push-ca CA -i <inventory with token K+1> "
                       f"(K = 1..{s}, at once)")
        row.extra.update(shards=per_shard, tokens=s, server_rate_per_min=self.rate,
                         client_rate_per_min=self.client_rate,
                         self_caused_429=sum(p["self_caused_429"] for p in per_shard))
        if single.ok and single.wall_s:
            row.extra["speedup_vs_one_token"] = round(single.wall_s / wall, 3)
        row.status = "ok"

    def shared(self, row: Row) -> None:
        """cloud push-ca while another process uses the same token at hammer_rate."""
        b, sim = self.bench, self.sim
        assert sim is not None
        data = yaml.safe_load(self.inventory(1).read_text())["defaults"]
        hammer = subprocess.Popen(
            [sys.executable, str(BENCH / "baselines" / "cloud_hammer.py"),
             "--api-url", data["api_url"], "--token-file", str(sim.token_path(1)),
             "--api-verify", data["api_verify"].removeprefix("ca:"),
             "--rate", repr(self.hammer_rate)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(1.0)  # the other process is already at it when certfleet starts
            before = sim.traffic()
            ca, fingerprint = make_ca("Bench cloud shared Root", b.cas)
            doc = self.measure(row, "cloud-shared", ["push-ca", str(ca)], "changed", None,
                               strict=False)
            after = sim.traffic()
        finally:
            try:  # the end of its stdin stops it; it prints its own counts
                out, err = hammer.communicate(input="", timeout=60)
            except subprocess.TimeoutExpired:
                hammer.kill()
                out, err = hammer.communicate()
        try:
            hammer_own = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise BenchError(f"the hammer exited {hammer.returncode}: {err[-800:]}") from None
        other = traffic_delta(before, after, token=1, agent=HAMMER_AGENT)
        outcomes: dict[str, int] = {}
        for entry in doc.get("devices", []):
            outcomes[entry.get("outcome", "?")] = outcomes.get(entry.get("outcome", "?"), 0) + 1
        row.succeeded = outcomes.get("changed", 0)
        if row.succeeded == self.n:
            b.verify_cas(b.device_names(), fingerprint)
        attempts = sum(c.get("attempts", 1) - 1 for d in doc.get("devices", [])
                       for c in d.get("calls", []))
        # what the window had left for certfleet: the server's rate less what the other
        # process actually got through while certfleet ran
        hammer_done_per_min = (other["requests"] - other["rate_limited"]) / (row.wall_s or 1) * 60
        left = max(self.rate - hammer_done_per_min, 1.0)
        done = row.extra["requests_roomsim"]
        row.extra.update(
            outcomes=outcomes, exit_code=row.exit_code, hammer_rate_per_min=self.hammer_rate,
            hammer_done_per_min=round(hammer_done_per_min, 1),
            hammer_requests=other["requests"], hammer_429=other["rate_limited"],
            hammer_waited_s=hammer_own.get("waited_s"), resent_calls_in_json=attempts,
            bound_rate_left_s=round(done / (left / 60), 3),
        )
        row.extra["note"] = (
            "another process polls with the same token; certfleet's pacer knows only its own "
            "requests, so the window fills, 429s come back and each pauses every device of "
            "the token for its Retry-After")
        row.status = "ok"


def cloud_targets(rows: dict[str, Row], target: Any, ratios: dict[str, Any]) -> None:
    """Issue 18's cloud targets: push-ca within 1.05x of its rate bound, no 429 of its own."""
    push = rows.get("cloud-push-ca")
    name = "cloud push-ca wall <= 1.05x its rate bound"
    if push is not None and push.ok and push.wall_s and push.ideal_s:
        ratio = push.wall_s / push.ideal_s
        ratios["cloud push-ca / rate bound"] = round(ratio, 3)
        ratios["cloud push-ca / server-rate bound"] = push.extra.get("vs_server_rate")
        judged = push.ideal_s >= SHORTEST_JUDGED_S  # else the client's start-up dominates
        target(name, "<= 1.05", ratio, ratio <= 1.05 if judged else None,
               f"{push.extra['requests_roomsim']} requests at {push.extra['client_rate_per_min']:g}"
               f"/min (server {push.extra['server_rate_per_min']}/min)" + (
                   "" if judged else f"; a bound under {SHORTEST_JUDGED_S:g} s is not judged: "
                   "the client's start-up (about 1 s) dominates it"))
        caused = push.extra["self_caused_429"]
        # fewer requests than the window holds: no client at all could have met a 429
        meaningful = push.extra["requests_roomsim"] > push.extra["server_rate_per_min"]
        target("cloud push-ca causes 0 429s", "0", caused, caused == 0 if meaningful else None,
               "more requests than one 60 s window holds" if meaningful else
               "fewer requests than one 60 s window holds: a 429 was impossible")
    else:
        why = push.status if push is not None else "not run"
        target(name, "<= 1.05", None, None, why)
        target("cloud push-ca causes 0 429s", "0", None, None, why)
    status = rows.get("cloud-status")
    if status is not None and status.ok and status.wall_s and status.ideal_s:
        ratios["cloud status / rate bound"] = round(status.wall_s / status.ideal_s, 3)
        ratios["cloud status self-caused 429s"] = status.extra["self_caused_429"]
    shard = rows.get("cloud-shard")
    if shard is not None and shard.ok:
        ratios["cloud shards: speedup vs one token"] = shard.extra.get("speedup_vs_one_token")
        if shard.wall_s and shard.ideal_s:
            ratios["cloud shards / rate bound"] = round(shard.wall_s / shard.ideal_s, 3)
    shared = rows.get("cloud-shared")
    if shared is not None and shared.ok:
        ratios["cloud shared token: certfleet 429s"] = shared.extra["self_caused_429"]
        ratios["cloud shared token: devices changed"] = f"{shared.succeeded}/{shared.devices}"


def rate_of(value: float | None, rate: int) -> float:
    """The client rate: as given, else roomsim's own choice for its cloud inventory."""
    return float(value) if value else float(max(1, round(rate * 0.93)))


def cloud_lines(rows: dict[str, dict[str, Any]]) -> list[str]:
    """What the table cannot show of the cloud rows (their JSON documents)."""
    out = []
    for name in ("cloud-push-ca", "cloud-status", "cloud-shared"):
        row = rows.get(name)
        if row is None or row["status"] != "ok":
            continue
        x = row["extra"]
        out.append(f"  {name}: {x['requests_roomsim']} requests answered by roomsim "
                   f"({x['requests_certfleet_json']} calls in certfleet's JSON), "
                   f"{x['self_caused_429']} 429s to certfleet; rate bound at the server's "
                   f"{x['server_rate_per_min']}/min {x['bound_server_rate_s']:.2f} s")
    shard = rows.get("cloud-shard")
    if shard is not None and shard["status"] == "ok":
        x = shard["extra"]
        parts = ", ".join(f"{p['shard']}: {p['devices']} dev {p['wall_s']:.1f} s "
                          f"{p['self_caused_429']} 429s" for p in x["shards"])
        out.append(f"  cloud-shard: {parts}; {x.get('speedup_vs_one_token', '-')}x the "
                   "one-token push-ca")
    shared = rows.get("cloud-shared")
    if shared is not None and shared["status"] == "ok":
        x = shared["extra"]
        out.append(f"  cloud-shared: other process at {x['hammer_rate_per_min']:g}/min made "
                   f"{x['hammer_requests']} requests, met {x['hammer_429']} 429s; certfleet "
                   f"exit {x['exit_code']}, outcomes {x['outcomes']}, "
                   f"{x['resent_calls_in_json']} calls sent again; bound at the rate the other "
                   f"left ({x['hammer_done_per_min']:g}/min used by it): "
                   f"{x['bound_rate_left_s']:.2f} s")
    return out
