"""Routing policies on a simulated vLLM fleet: throughput, time to first token, cache hits.

    python -m bench fleet [--replicas 4] [--seconds 40] [--speed 4] [--quick]

For each workload the fleet's capacity is measured first: the highest rate of open-loop
arrivals that least outstanding (a plain load balancer) sustains, found by raising the rate
25% a step until the fleet falls behind (a backlog still draining 10% of the window after
arrivals stop, or p90 time to first token over 2 s). Each policy then gets the same
open-loop Poisson arrivals at 80% of that capacity through `tram serve` (one gateway process,
then four with `--workers 4`), each on a fresh fleet. Every run first warms the fleet for
half its window (the same arrivals, not counted: a fleet in service has its popular prefixes
cached), then counts the turns that start in the window: throughput is those finished
inside it, so a policy that falls behind shows it; time to first token is every counted
turn's, backlog included. Figures are in simulated time.

Workloads (random text, fixed seeds):
  chat     agent-like conversations of 8 turns: one of 4 shared system prompts (~1,500
           tokens), a first message (~300 tokens), then tool output or pasted text each turn
           (~200 tokens); each turn resends the whole conversation (up to ~4,000 tokens)
  rag      one of 48 documents (~4,000 tokens each: together more than one replica's KV
           cache holds; popularity 1/sqrt(rank)) and a unique question
  unique   unrelated ~1,500-token prompts (the control: nothing to reuse)
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import orjson

from bench.gateway import _start, _wait, stop_processes
from bench.loadgen import KEY, free_port
from bench.workloads import session

ROOT = Path(__file__).resolve().parents[1]
MAX_TOKENS = 24


@dataclass
class Stats:
    ttft: list[float] = field(default_factory=list)  # simulated ms
    finished: list[float] = field(default_factory=list)  # perf_counter() of each good turn
    tokens: int = 0
    requests: int = 0
    errors: int = 0
    why: collections.Counter[str] = field(default_factory=collections.Counter)


class Load:
    """Open-loop sessions of one workload through a gateway (a Flow's: its max_tokens, its
    engine priority when not 0, and its bearer token)."""

    def __init__(self, url: str, speed: float, workload: str, seed: int = 7,
                 max_tokens: int = MAX_TOKENS, priority: int = 0, token: str = KEY) -> None:
        self.url = url
        self.speed = speed
        self.workload = workload
        self.seed = seed
        self.max_tokens, self.priority, self.token = max_tokens, priority, token
        self.arrivals = random.Random(seed)  # the same arrival times for every policy
        self.sessions = 0
        self.stats = Stats()
        self.done_at: list[float] = []  # perf_counter() of every good turn, counted or not
        self.window_start = float("inf")  # set by open_loop
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80

    async def turn(self, messages: list[dict[str, str]]) -> str:
        """One streamed request on a fresh connection (a raw asyncio client: httpx's pool
        cost more CPU than the fleet with a few hundred connections open)."""
        payload = {"model": "sim", "messages": messages, "max_tokens": self.max_tokens,
                   "stream": True}
        if self.priority:
            payload["priority"] = self.priority  # vLLM's field; the gateway passes it on
        body = orjson.dumps(payload)
        request = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: {self.host}\r\n"
                   f"authorization: Bearer {self.token}\r\ncontent-type: application/json\r\n"
                   f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body
        started = time.perf_counter()
        # Turns that start during the warm-up load the fleet but are not counted.
        stats = self.stats if started >= self.window_start else Stats()
        first = None
        chunks: list[bytes] = []
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        except OSError as exc:
            stats.errors += 1
            stats.why[f"connect: {exc}"] += 1
            return ""
        try:
            writer.write(request)
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if first is None and b'"content"' in data:
                    first = time.perf_counter()
                chunks.append(data)
        except OSError:
            pass
        finally:
            writer.close()
        raw = b"".join(chunks)
        if first is None or not raw.startswith(b"HTTP/1.1 200") or b"data: [DONE]" not in raw:
            stats.errors += 1
            stats.why[raw[:12].decode(errors="replace") or "no answer"] += 1
            return ""
        stats.ttft.append((first - started) * 1000 * self.speed)
        stats.finished.append(time.perf_counter())
        self.done_at.append(stats.finished[-1])
        stats.tokens += self.max_tokens
        stats.requests += 1
        text = []
        for line in raw.split(b"\n"):
            if line.startswith(b"data: {"):
                choices = orjson.loads(line[6:]).get("choices") or [{}]
                text.append(choices[0].get("delta", {}).get("content") or "")
        return "".join(text)

    async def session(self) -> None:
        """One arrival: a conversation (chat), or one request (rag, unique); its content
        depends only on its number, not on what ran before it (bench/workloads.py)."""
        self.sessions += 1
        turns = session(self.workload, self.seed, self.sessions)
        answer = None
        try:
            while True:
                messages = turns.send(answer)  # type: ignore[arg-type]
                answer = await self.turn(messages)
        except StopIteration:
            pass

    async def open_loop(self, rate: float, seconds: float, warmup: float
                        ) -> tuple[float, float]:
        """Poisson arrivals of sessions at `rate` per real second for `warmup` + `seconds`;
        turns that start in the last `seconds` are counted. When that window started, and
        how long the backlog took to drain after the last arrival (real s)."""
        started = time.perf_counter()
        self.window_start = started + warmup
        tasks = []
        while time.perf_counter() - started < warmup + seconds:
            tasks.append(asyncio.ensure_future(self.session()))
            await asyncio.sleep(self.arrivals.expovariate(rate))
        window_end = time.perf_counter()
        await asyncio.gather(*tasks)
        return self.window_start, time.perf_counter() - window_end


def _fleet(replicas: int, speed: float, scheduling: str = "fcfs"
           ) -> tuple[subprocess.Popen[bytes], list[str]]:
    # Below the ephemeral range (where free_port finds the gateway's): no collision.
    port = 20000 + random.Random().randrange(0, 1200) * 8
    while any(_busy(port + i) for i in range(replicas)):
        port += 8
    process = _start([sys.executable, "-m", "bench.fleet_sim", "--replicas", str(replicas),
                      "--port", str(port), "--speed", str(speed),
                      "--scheduling-policy", scheduling], "0", cwd=ROOT)
    urls = [f"http://127.0.0.1:{port + i}" for i in range(replicas)]
    for url in urls:
        _wait(url, "/v1/models")
    return process, urls


def _busy(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _gateway(urls: list[str], policy: str, workers: int, workdir: Path,
             model_extra: str = "", config_extra: str = ""
             ) -> tuple[subprocess.Popen[bytes], str]:
    """`model_extra`, `config_extra`: YAML lines for the model and the file (indented)."""
    upstreams = "".join(f"\n      - {{url: '{u}/v1', served_name: sim}}" for u in urls)
    (workdir / "tram.yaml").write_text(
        f"models:\n  - name: sim\n    upstreams:{upstreams}\n"
        f"    routing: {{policy: {policy}}}\n    health: {{probe_interval: 3600}}\n"
        "    timeouts: {first_byte: 600, total: 1200}\n    retries: 0\n"
        + model_extra + config_extra)
    port = free_port()
    env = {**os.environ, "TRAM_MASTER_KEY": KEY, "TRAM_DATA_DIR": str(workdir / "data")}
    process = _start([sys.executable, "-m", "tram", "serve", "--config", "tram.yaml", "--host",
                      "127.0.0.1", "--port", str(port), "--workers", str(workers),
                      "--log-level", "warning"], "1", env=env, cwd=workdir)
    url = f"http://127.0.0.1:{port}"
    _wait(url)
    return process, url


def _hit_rates(urls: list[str]) -> list[float]:
    rates = []
    for url in urls:
        text = httpx.get(url + "/metrics").text
        values = {line.split("{")[0]: float(line.rsplit(" ", 1)[1])
                  for line in text.splitlines() if line}
        queries = values.get("vllm:prefix_cache_queries_total", 0.0)
        rates.append(values.get("vllm:prefix_cache_hits_total", 0.0) / queries if queries else 0)
    return rates


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


@dataclass
class Row:
    workload: str
    policy: str
    gateways: int
    rate: float  # sessions per real second offered
    throughput: float  # output tokens per simulated second, turns finished in the window
    ttft: tuple[float, float, float]  # p50, p90, p99 simulated ms
    hits: list[float]
    requests: int
    errors: int
    drain: float  # simulated s the backlog took after the last arrival
    why: collections.Counter[str] = field(default_factory=collections.Counter)
    share: float = 0.8  # of the fleet's capacity


SLO_P90_MS = 2000.0  # the fleet "sustains" a rate while p90 time to first token stays under
FIRST_GUESS = {"chat": 6.0, "rag": 16.0, "unique": 20.0}  # sessions/s, 4 replicas, speed 0.5


def run_one(workload: str, policy: str, workers: int, replicas: int, speed: float,
            rate: float, seconds: float) -> Row:
    """One fresh fleet and gateway, open-loop arrivals at `rate` sessions per real second."""
    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="tram-fleet-") as tmp:
        try:
            fleet, urls = _fleet(replicas, speed)
            processes.append(fleet)
            gateway, url = _gateway(urls, policy, workers, Path(tmp))
            processes.append(gateway)
            load = Load(url, speed, workload)
            started, drain = asyncio.run(load.open_loop(rate, seconds, seconds / 2))
            stats = load.stats
            in_window = sum(1 for t in stats.finished if t - started <= seconds)
            return Row(workload, policy, workers, rate,
                       in_window * MAX_TOKENS / (seconds * speed),
                       (_percentile(stats.ttft, .5), _percentile(stats.ttft, .9),
                        _percentile(stats.ttft, .99)), _hit_rates(urls), stats.requests,
                       stats.errors, drain * speed, stats.why)
        finally:
            stop_processes(processes)


def capacity(workload: str, replicas: int, speed: float, seconds: float
             ) -> tuple[float, list[str]]:
    """The highest rate least outstanding sustains (p90 TTFT under the SLO), stepping 25%."""
    rate = FIRST_GUESS[workload] * replicas / 4 * speed / 0.5
    steps: list[str] = []
    best = 0.0
    while True:
        row = run_one(workload, "least_outstanding", 1, replicas, speed, rate, seconds)
        ok = row.ttft[1] <= SLO_P90_MS and row.errors == 0
        steps.append(f"{rate:.2f} {'✓' if ok else '✗'} (p90 {row.ttft[1]:.0f} ms"
                     + (f", {row.errors} errors: {row.why.most_common(1)[0][0]})" if row.errors
                        else ")"))
        print(f"capacity {workload}: {steps[-1]}", flush=True)
        if ok:
            best = rate
            rate *= 1.25
        elif best:
            return best, steps
        else:
            rate *= 0.8


@dataclass
class Plan:
    """What one `python -m bench fleet` run measures."""

    replicas: int = 4
    seconds: float = 40.0
    speed: float = 4.0
    quick: bool = False
    workloads: tuple[str, ...] = ("chat", "rag", "unique")
    # Offered 100% per workload (sessions per real second); the capacity probe when absent.
    rates: dict[str, float] = field(default_factory=dict)
    policies: tuple[str, ...] = ("round_robin", "least_outstanding", "cache_aware")
    gateways: tuple[int, ...] = ()  # () = 1, and 4 too for chat and rag unless quick

    def command(self) -> str:
        extra = "".join([
            " --quick" if self.quick else "",
            f" --workloads {','.join(self.workloads)}"
            if self.workloads != ("chat", "rag", "unique") else "",
            f" --rates {','.join(f'{k}={v:g}' for k, v in self.rates.items())}"
            if self.rates else "",
            f" --policies {','.join(self.policies)}"
            if self.policies != Plan.policies else "",
            f" --gateways {','.join(map(str, self.gateways))}" if self.gateways else ""])
        return (f"python -m bench fleet --replicas {self.replicas} --seconds {self.seconds:g} "
                f"--speed {self.speed:g}{extra}")

    def rows(self, workload: str) -> list[tuple[float, str, int]]:
        plans = [(0.8, p, 1) for p in self.policies]
        if self.gateways:
            plans = [(0.8, p, g) for g in self.gateways for p in self.policies
                     if g == 1 or p != "least_outstanding"]
        elif workload != "unique" and not self.quick:
            plans += [(0.8, p, 4) for p in self.policies if p != "least_outstanding"]
            plans += [(1.25, p, 1) for p in self.policies]
        return plans


def run(plan: Plan) -> str:
    os.sched_setaffinity(0, {0})
    replicas, seconds, speed = plan.replicas, plan.seconds, plan.speed
    lines = [plan.command(), ""]
    table = ["| workload (sessions/s) | policy | gateways | output tok/s | "
             "TTFT p50 / p90 / p99 ms | prefix hit rate per replica | requests (errors) | "
             "drain s |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    capacities = ["| workload | rates tried (least outstanding, ✓ p90 TTFT ≤ 2 s) | capacity "
                  "| 80% |", "| --- | --- | --- | --- |"]
    rows: list[Row] = []
    for workload in plan.workloads:
        if workload in plan.rates:
            fleet_capacity, steps = plan.rates[workload], ["given"]
        else:
            fleet_capacity, steps = capacity(workload, replicas, speed, seconds / 2)
        capacities.append(f"| {workload} | {', '.join(steps)} | {fleet_capacity:.2f} | "
                          f"{0.8 * fleet_capacity:.2f} |")
        for share, policy, workers in plan.rows(workload):
            row = run_one(workload, policy, workers, replicas, speed, share * fleet_capacity,
                          seconds)
            row.share = share
            rows.append(row)
            hits = " ".join(f"{h:.0%}" for h in row.hits)
            table.append(f"| {workload} ({row.rate:.2f}, {share:.0%}) | {policy} | {workers} | "
                         f"{row.throughput:.0f} | {row.ttft[0]:.0f} / {row.ttft[1]:.0f} / "
                         f"{row.ttft[2]:.0f} | {hits} | {row.requests} ({row.errors}) | "
                         f"{row.drain:.1f} |")
            print(table[-1], flush=True)
    lines += ["Fleet capacity (sessions per real second, one gateway):", "", *capacities, "",
              "Open loop at 80% (and 125%) of the fleet's capacity:", "", *table, "",
              _verdict(rows)]
    return "\n".join(lines)


def _verdict(rows: list[Row]) -> str:
    def find(workload: str, policy: str, gateways: int, share: float = 0.8) -> Row | None:
        return next((r for r in rows if (r.workload, r.policy, r.gateways, r.share)
                     == (workload, policy, gateways, share)), None)

    out = []
    for workload in ("chat", "rag"):
        for gateways, share in ((1, 0.8), (4, 0.8), (1, 1.25)):
            new = find(workload, "cache_aware", gateways, share)
            rr = find(workload, "round_robin", gateways, share)
            if new and rr:
                out.append(f"- {workload}, {share:.0%} load, {gateways} gateway(s): throughput "
                           f"{new.throughput / rr.throughput:.2f}× round robin, p90 TTFT "
                           f"{rr.ttft[1] / max(new.ttft[1], 1e-9):.1f}× lower")
    new, lo = find("unique", "cache_aware", 1), find("unique", "least_outstanding", 1)
    if new and lo:
        out.append(f"- unique (control): throughput {new.throughput / lo.throughput:.3f}× least "
                   f"outstanding, p90 TTFT {new.ttft[1] / max(lo.ttft[1], 1e-9):.2f}×")
    rr = find("unique", "round_robin", 1)
    if rr:
        out.append("- unique (control), p90 TTFT ÷ round robin's: " + ", ".join(
            f"{row.policy} {row.ttft[1] / max(rr.ttft[1], 1e-9):.2f}"
            for row in (new, lo) if row is not None))
    return "\n".join(out)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench fleet")
    parser.add_argument("--replicas", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--speed", type=float, default=4.0)
    parser.add_argument("--quick", action="store_true", help="one gateway only")
    parser.add_argument("--workloads", default="chat,rag,unique")
    parser.add_argument("--rates", default="",
                        help="capacity per workload, sessions per real second (no probe): "
                             "e.g. chat=14.65,rag=16")
    parser.add_argument("--policies", default=",".join(Plan.policies))
    parser.add_argument("--gateways", default="", help="e.g. 1,4 (rows at 80%% only)")
    args = parser.parse_args(argv)
    rates = {k: float(v) for k, v in (i.split("=") for i in args.rates.split(",") if i)}
    plan = Plan(args.replicas, args.seconds, args.speed, args.quick,
                tuple(args.workloads.split(",")), rates, tuple(args.policies.split(",")),
                tuple(int(g) for g in args.gateways.split(",") if g))
    print(run(plan))
    return 0
