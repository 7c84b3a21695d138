"""Before/after: the gateway's CPU per request, this tree against another revision, one run.

    python -m bench compare [--base REV] [--rounds 5] [--seconds 5] [--streams 1000]

Both gateways run as `tram serve` (one worker, HTTP server included: what an operator runs),
pinned together to core 1, in front of the benchmark fake engine on core 0; the load
generators (wrk, and an asyncio client for streams) run on core 0. Each round measures, for
each path, both gateways at once under the same load: the master key and the full path (a
virtual key with rpm/tpm/concurrency limits, usage written to SQLite for every request) with
64 connections each, then 16 concurrent streams of 20 chunks each. CPU per request is each
gateway process's own CPU time (/proc) over the requests it completed in that same window.

Why at once, on one core: this VM's speed drifts by ±30% from one second to the next (the
rounds of a run that alternated the two spread from 0.83 to 1.67). Two gateways measured in the
same seconds on the same core see the same drift, and their ratio keeps only what differs: run
against itself (`--base HEAD` on a clean tree) a round's ratio stays within ±3%, and the median
of 5 within ±1.5% (bench/RESULTS.md). Reports medians and the current/base ratio, then the hot
paths timed alone under each tree (bench/hotpaths.py).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import httpx
import orjson

from bench.gateway import _cpu_seconds, _start, _wait, stop_processes
from bench.loadgen import KEY, free_port, streams, wrk

ROOT = Path(__file__).resolve().parents[1]
PATHS = ("master key", "virtual key + limits", "stream of 20")
CONFIG = ("models:\n  - name: bench\n    upstreams: [{{url: '{engine}/v1', served_name: bench}}]"
          "\n    health: {{probe_interval: 3600}}\n")


def _tree(rev: str, into: Path) -> Path:
    """The source of `rev` (its src/ folder), unpacked from git."""
    archive = subprocess.run(["git", "archive", rev, "src"], cwd=ROOT, capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


def _serve(src: Path, workdir: Path, engine: str) -> tuple[subprocess.Popen[bytes], str, str]:
    workdir.mkdir()
    (workdir / "tram.yaml").write_text(CONFIG.format(engine=engine))
    port = free_port()
    env = {**os.environ, "TRAM_MASTER_KEY": KEY, "PYTHONPATH": str(src)}
    process = _start([sys.executable, "-m", "tram", "serve", "--config", "tram.yaml", "--host",
                      "127.0.0.1", "--port", str(port), "--log-level", "warning"], "1",
                     env=env, cwd=workdir)
    url = f"http://127.0.0.1:{port}"
    _wait(url)
    virtual = httpx.post(url + "/admin/keys", headers={"Authorization": f"Bearer {KEY}"},
                         json={"name": "bench", "rpm": 10**9, "tpm": 10**9,
                               "max_concurrency": 10**6}).json()["key"]
    return process, url, virtual


def _load(path: str, url: str, key: str, seconds: float, stream_count: int) -> int:
    """One gateway's share of a round: the requests it completed."""
    if path == "stream of 20":
        result = streams(url, 16, stream_count, 20, 0)
        return stream_count - result.failures
    return wrk(url, 64, seconds, "0", key).requests


def _round(gateways: dict[str, tuple[int, str, str]], path: str, seconds: float,
           stream_count: int) -> dict[str, float]:
    """µs of CPU per request of each gateway, both loaded at once."""
    before = {name: _cpu_seconds(pid) for name, (pid, _, _) in gateways.items()}
    counts: dict[str, int] = {}

    def load(name: str, url: str, key: str) -> None:
        counts[name] = _load(path, url, key, seconds, stream_count)

    threads = [threading.Thread(target=load, args=(name, url, KEY if path == "master key"
                                                   else virtual))
               for name, (_, url, virtual) in gateways.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {name: (_cpu_seconds(pid) - before[name]) * 1e6 / max(1, counts[name])
            for name, (pid, _, _) in gateways.items()}


def run(base: str, rounds: int, seconds: float, stream_count: int = 1000) -> str:
    os.sched_setaffinity(0, {0})
    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="tram-compare-") as tmp:
        workdir = Path(tmp)
        try:
            engine_port = free_port()
            processes.append(_start([sys.executable, "-m", "bench.fake_engine", "--port",
                                     str(engine_port)], "0", cwd=ROOT))
            engine = f"http://127.0.0.1:{engine_port}"
            _wait(engine)
            trees = {"base": _tree(base, workdir), "current": ROOT / "src"}
            gateways = {}
            for name, src in trees.items():
                process, url, virtual = _serve(src, workdir / f"run-{name}", engine)
                processes.append(process)
                gateways[name] = (process.pid, url, virtual)
                wrk(url, 16, 1, "0", virtual)  # warm-up
            samples: dict[tuple[str, str], list[float]] = {}
            for _ in range(rounds):
                for path in PATHS:
                    for name, value in _round(gateways, path, seconds, stream_count).items():
                        samples.setdefault((name, path), []).append(value)
        finally:
            stop_processes(processes)
    lines = [f"python -m bench compare --base {base} --rounds {rounds} --seconds {seconds:g} "
             f"--streams {stream_count}",
             "", "| path (c=64 each; streams c=16 each) | base µs CPU/request, median | current "
             "| current / base, median of rounds (min–max) |", "| --- | --- | --- | --- |"]
    for path in PATHS:
        old, new = samples[("base", path)], samples[("current", path)]
        # Each round measured both at once: its ratio is free of the drift between rounds.
        ratios = [n / o for o, n in zip(old, new, strict=True)]
        lines.append(f"| {path} | {statistics.median(old):.0f} | {statistics.median(new):.0f} | "
                     f"{statistics.median(ratios):.3f} ({min(ratios):.2f}–{max(ratios):.2f}) |")
    return "\n".join(lines)


def hotpaths(base: str, rounds: int = 3) -> str:
    """bench/hotpaths.py under each tree, alternated: µs per call, and the ratio."""
    samples: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="tram-hotpaths-") as tmp:
        trees = {"base": _tree(base, Path(tmp)), "current": ROOT / "src"}
        for _ in range(rounds):
            for name, src in trees.items():
                out = subprocess.run(["taskset", "-c", "1", sys.executable, "-m", "bench.hotpaths"],
                                     cwd=ROOT, env={**os.environ, "PYTHONPATH": str(src)},
                                     capture_output=True, text=True, check=True).stdout
                for path, value in orjson.loads(out).items():
                    samples.setdefault((name, path), []).append(value)
    lines = ["", "| hot path (alone, best of 7 × 20,000 calls) | base µs | current µs | "
             "difference µs |", "| --- | --- | --- | --- |"]
    for path in dict.fromkeys(path for _, path in samples):
        old, new = min(samples[("base", path)]), min(samples[("current", path)])
        lines.append(f"| {path} | {old:.2f} | {new:.2f} | {new - old:+.2f} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench compare", description=__doc__)
    parser.add_argument("--base", default="HEAD", help="the revision to compare against")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0, help="per wrk run")
    parser.add_argument("--streams", type=int, default=1000, help="streams per gateway a round")
    args = parser.parse_args(argv)
    print(run(args.base, args.rounds, args.seconds, args.streams))
    print(hotpaths(args.base))
    return 0
