"""The Batch API's own cost: a batch's creation (its file checked and stored line by line), and
the gateway's CPU per line against an interactive chat request's.

    python -m bench batches [--lines 2000] [--big 50000] [--database URL]

One `tram serve` (core 1, SQLite unless `--database`) in front of the benchmark fake engine
(core 0). A file of `--big` chat lines is uploaded and made a batch (the time of
POST /v1/batches: parsing and checking every line, inserting it), then cancelled. A batch of
`--lines` lines runs to its end: wall time, lines per second, and the gateway's CPU per line
(claims, leases, results, the request itself, the files at the end). Then the same number of
chat requests, 16 at a time (an asyncio client on core 0): the gateway's CPU per interactive
request, on the same process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

from bench.gateway import _cpu_seconds, _start, _wait, stop_processes
from bench.loadgen import CHAT_BODY, KEY, free_port

ROOT = Path(__file__).resolve().parents[1]
AUTH = {"Authorization": f"Bearer {KEY}"}


def _lines(count: int) -> bytes:
    return b"".join(orjson.dumps({
        "custom_id": f"r{n}", "method": "POST", "url": "/v1/chat/completions",
        "body": {"model": "bench", "max_tokens": 16, "messages": [
            {"role": "user", "content": f"Hello, how can you help me? ({n})"}]}}) + b"\n"
        for n in range(count))


def _create(url: str, content: bytes) -> tuple[dict, float]:
    with httpx.Client(base_url=url, headers=AUTH, timeout=600) as client:
        uploaded = client.post("/v1/files", data={"purpose": "batch"},
                               files={"file": ("in.jsonl", content)}).json()
        started = time.perf_counter()
        batch = client.post("/v1/batches", json={
            "input_file_id": uploaded["id"], "endpoint": "/v1/chat/completions",
            "completion_window": "24h"}).json()
        return batch, time.perf_counter() - started


async def _interactive(url: str, count: int, concurrency: int = 16) -> None:
    todo = iter(range(count))
    async with httpx.AsyncClient(base_url=url, timeout=60, headers={
            **AUTH, "content-type": "application/json"}) as client:

        async def worker() -> None:
            for _ in todo:
                answer = await client.post("/v1/chat/completions", content=CHAT_BODY)
                assert answer.status_code == 200, answer.text

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def _measure(url: str, gateway: subprocess.Popen[bytes], lines: int, big: int) -> list[str]:
    content = _lines(big)
    batch, took = _create(url, content)
    httpx.post(f"{url}/v1/batches/{batch['id']}/cancel", headers=AUTH, timeout=60)
    rows = [f"| create a batch of {big} lines ({len(content) / 2**20:.1f} MiB) | "
            f"{took * 1000:.0f} ms |"]
    while httpx.get(f"{url}/v1/batches/{batch['id']}", headers=AUTH,
                    timeout=60).json()["status"] != "cancelled":
        time.sleep(0.5)
    before = _cpu_seconds(gateway.pid)
    started = time.perf_counter()
    batch, _ = _create(url, _lines(lines))
    while (found := httpx.get(f"{url}/v1/batches/{batch['id']}", headers=AUTH,
                              timeout=60).json())["status"] != "completed":
        time.sleep(0.2)
    wall = time.perf_counter() - started
    cpu = _cpu_seconds(gateway.pid) - before
    assert found["request_counts"]["completed"] == lines, found
    rows += [f"| a batch of {lines} lines, end to end | {wall:.1f} s, {lines / wall:.0f} "
             "lines/s |",
             f"| gateway CPU per batch line | {cpu * 1e6 / lines:.0f} µs |"]
    asyncio.run(_interactive(url, 200))  # warm-up
    before = _cpu_seconds(gateway.pid)
    started = time.perf_counter()
    asyncio.run(_interactive(url, lines))
    wall = time.perf_counter() - started
    per_request = (_cpu_seconds(gateway.pid) - before) * 1e6 / lines
    rows += [f"| {lines} interactive chat requests, 16 at a time | {wall:.1f} s, "
             f"{lines / wall:.0f} requests/s |",
             f"| gateway CPU per interactive chat request | {per_request:.0f} µs |"]
    return rows


def run(lines: int, big: int, database: str | None) -> str:
    os.sched_setaffinity(0, {0})
    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="tram-batches-") as tmp:
        try:
            engine_port = free_port()
            processes.append(_start([sys.executable, "-m", "bench.fake_engine", "--port",
                                     str(engine_port)], "0", cwd=ROOT))
            engine = f"http://127.0.0.1:{engine_port}"
            _wait(engine)
            config = {"models": [{"name": "bench", "health": {"probe_interval": 3600},
                                  "upstreams": [{"url": engine + "/v1",
                                                 "served_name": "bench"}]}],
                      "batches": {"poll_interval": 0.5, "adjust_interval": 0.1}}
            if database:
                config["database"] = {"url": database}
            (Path(tmp) / "tram.yaml").write_bytes(orjson.dumps(config))
            port = free_port()
            gateway = _start([sys.executable, "-m", "tram", "serve", "--config", "tram.yaml",
                              "--host", "127.0.0.1", "--port", str(port), "--log-level",
                              "warning"], "1", env={**os.environ, "TRAM_MASTER_KEY": KEY},
                             cwd=tmp)
            processes.append(gateway)
            url = f"http://127.0.0.1:{port}"
            _wait(url)
            rows = _measure(url, gateway, lines, big)
        finally:
            stop_processes(processes)
    store = "PostgreSQL" if database else "SQLite"
    return "\n".join([f"python -m bench batches --lines {lines} --big {big} ({store}, "
                      f"{os.cpu_count()} cores)", "", "| what | measured |", "| --- | --- |",
                      *rows])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench batches")
    parser.add_argument("--lines", type=int, default=2000)
    parser.add_argument("--big", type=int, default=50000)
    parser.add_argument("--database", help="a PostgreSQL URL (default: a SQLite file)")
    args = parser.parse_args(argv)
    print(run(args.lines, args.big, args.database))
    return 0
