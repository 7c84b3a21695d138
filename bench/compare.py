"""Before/after: the gateway's CPU per request, this tree against another revision, one run.

    python -m bench compare [--base REV] [--rounds 5] [--seconds 5] [--streams 1000]

Both gateways run as `tram serve` (one worker, HTTP server included: what an operator runs),
pinned together to core 1, in front of the benchmark fake engine on core 0; the load
generators (wrk, and a process of asyncio clients for streams) run on core 0. Each round
measures, for each path, both gateways at once under the same load: the master key and the
full path (a virtual key with rpm/tpm/concurrency limits, usage written to SQLite for every
request) with 64 connections each, then 16 concurrent streams of 20 chunks each. CPU per
request is each gateway process's own CPU time (/proc) over the requests it completed, read
when its own load ends; the order in which the two loads start alternates by round. Also shown:
the share of core 1 each gateway used while loaded (about half each when the core is the
bottleneck, as it should be).

Why at once, on one core: this VM's speed drifts from one second to the next, more than the few
percent a change is judged by; two gateways measured in the same seconds on the same core see
the same drift, and their ratio keeps what differs. The tool's own noise is its run against
the tree itself (`--base HEAD` on a clean tree): bench/RESULTS.md and docs/decisions.md
("The garbage collector of a gateway process"). Reports medians and the current/base ratio,
then the hot paths timed alone under each tree (bench/hotpaths.py).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import orjson

from bench.gateway import _cpu_seconds, _start, _wait, stop_processes
from bench.loadgen import KEY, free_port, wrk

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


# One gateway's streams, in a process of their own: two loaders in one interpreter would share
# its lock, and the split of the load between the two gateways with it.
_STREAMS = ("import sys; from bench.loadgen import streams; n = int(sys.argv[2]); "
            "print(n - streams(sys.argv[1], 16, n, 20, 0).failures)")


def _load(path: str, url: str, key: str, seconds: float, stream_count: int) -> int:
    """One gateway's share of a round: the requests it completed."""
    if path == "stream of 20":
        out = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", _STREAMS, url,
                              str(stream_count)], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout
        return int(out)
    return wrk(url, 64, seconds, "0", key).requests


def _round(gateways: dict[str, tuple[int, str, str]], order: list[str], path: str,
           seconds: float, stream_count: int) -> dict[str, tuple[float, float]]:
    """Each gateway's µs of CPU per request and share of the core, both loaded at once."""
    results: dict[str, tuple[float, float]] = {}
    failures: list[Exception] = []

    def load(name: str) -> None:
        pid, url, virtual = gateways[name]
        try:
            cpu, wall = _cpu_seconds(pid), time.perf_counter()
            count = _load(path, url, KEY if path == "master key" else virtual, seconds,
                          stream_count)
            cpu, wall = _cpu_seconds(pid) - cpu, time.perf_counter() - wall
            if count <= 0:
                raise RuntimeError(f"{name}: no request of '{path}' completed")
            results[name] = (cpu * 1e6 / count, cpu / wall)
        except Exception as exc:  # noqa: BLE001 - raised below, in the caller's thread
            failures.append(exc)

    threads = [threading.Thread(target=load, args=(name,)) for name in order]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return results


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
            samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
            for number in range(rounds):
                order = list(gateways)[::-1 if number % 2 else 1]
                for path in PATHS:
                    for name, value in _round(gateways, order, path, seconds,
                                              stream_count).items():
                        samples.setdefault((name, path), []).append(value)
        finally:
            stop_processes(processes)
    lines = [f"python -m bench compare --base {base} --rounds {rounds} --seconds {seconds:g} "
             f"--streams {stream_count}",
             "", "| path (c=64 each; streams c=16 each) | base µs CPU/request, median | current "
             "| current / base, median of rounds (min–max) | share of the core, base · current |",
             "| --- | --- | --- | --- | --- |"]
    for path in PATHS:
        old, new = samples[("base", path)], samples[("current", path)]
        # Each round measured both at once: its ratio is free of the drift between rounds.
        ratios = [n[0] / o[0] for o, n in zip(old, new, strict=True)]
        lines.append(
            f"| {path} | {statistics.median(o[0] for o in old):.0f} | "
            f"{statistics.median(n[0] for n in new):.0f} | {statistics.median(ratios):.3f} "
            f"({min(ratios):.2f}–{max(ratios):.2f}) | {statistics.median(o[1] for o in old):.2f}"
            f" · {statistics.median(n[1] for n in new):.2f} |")
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
