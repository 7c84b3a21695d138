"""Before/after: the gateway's CPU per request, this tree against another revision, one run.

    python -m bench compare [--base REV] [--rounds 5] [--seconds 5]

Both gateways run as `tram serve` (one worker, HTTP server included: what an operator runs),
pinned to core 1, in front of the benchmark fake engine on core 0; wrk (core 0) loads one at a
time, alternating base and current for `--rounds` rounds so the machine's drifting load falls
on both alike. Each round measures, with 64 connections: the master key, and the full path (a
virtual key with rpm/tpm/concurrency limits, usage written to SQLite for every request); and
16 concurrent streams of 20 chunks. CPU per request is the gateway process's own CPU time
(/proc) over the requests wrk completed. Reports medians and the current/base ratio, then the
hot paths timed alone under each tree (bench/hotpaths.py), which show a change of a few µs
that the whole-request numbers of a shared machine cannot.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

from bench.gateway import _cpu_seconds, _start, _wait, stop_processes
from bench.loadgen import KEY, free_port, streams, wrk

ROOT = Path(__file__).resolve().parents[1]
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


def _cpu_per_request(pid: int, work: object) -> float:
    before = _cpu_seconds(pid)
    count = work()  # type: ignore[operator]
    return (_cpu_seconds(pid) - before) * 1e6 / count


def run(base: str, rounds: int, seconds: float) -> str:
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
            samples: dict[tuple[str, str], list[float]] = {}
            for _ in range(rounds):
                for name, (pid, url, virtual) in gateways.items():
                    wrk(url, 16, 1, "0", virtual)  # warm-up
                    for path, key in (("master key", KEY), ("virtual key + limits", virtual)):
                        samples.setdefault((name, path), []).append(_cpu_per_request(
                            pid, lambda url=url, key=key: wrk(url, 64, seconds, "0",
                                                              key).requests))
                    samples.setdefault((name, "stream of 20"), []).append(_cpu_per_request(
                        pid, lambda url=url: streams(url, 16, 400, 20, 0) and 400))
                    time.sleep(0.5)
        finally:
            stop_processes(processes)
    lines = [f"python -m bench compare --base {base} --rounds {rounds} --seconds {seconds:g}",
             "", "| path (c=64; streams c=16) | base µs CPU/request, median | current | "
             "current / base, median of rounds (min–max) |", "| --- | --- | --- | --- |"]
    for path in ("master key", "virtual key + limits", "stream of 20"):
        old, new = samples[("base", path)], samples[("current", path)]
        # Each round measured both back to back: its ratio is free of the drift between rounds.
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
    args = parser.parse_args(argv)
    print(run(args.base, args.rounds, args.seconds))
    print(hotpaths(args.base))
    return 0
