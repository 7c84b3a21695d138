"""Each route beside chat against chat itself: the gateway's CPU and latency per request.

    python -m bench routes [--rounds 5] [--seconds 3]

One `tram serve` (core 1) in front of the benchmark fake engine (core 0), wrk on core 0 with
16 connections and the master key. Every round measures chat and then each route back to
back, so each route's ratio to chat is taken within a round (the machine's drift falls on
both); the table gives medians. Routes the fake engine answers natively are relayed (its
answer is a fixed JSON object); "bridged" rows go over the engine's chat completions
(`routes: {responses: bridge, messages: bridge}`); "stored" writes the response to SQLite. The stream rows
(20 chunks each) are compared with chat's JSON row like the rest, and with each other.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.gateway import _cpu_seconds, _start, _wait, stop_processes
from bench.loadgen import CHAT_BODY, KEY, free_port, wrk

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """models:
  - name: bench
    upstreams: [{{url: '{engine}/v1', served_name: bench}}]
    health: {{probe_interval: 3600}}
  - name: bridged
    routes: {{responses: bridge, messages: bridge}}
    upstreams: [{{url: '{engine}/v1', served_name: bench}}]
    health: {{probe_interval: 3600}}
"""
HELLO = "Hello, how can you help me?"
CASES: list[tuple[str, str, str]] = [
    ("chat", "/v1/chat/completions", CHAT_BODY),
    ("completions", "/v1/completions",
     f'{{"model":"bench","prompt":"{HELLO}","max_tokens":16}}'),
    ("embeddings", "/v1/embeddings", f'{{"model":"bench","input":"{HELLO}"}}'),
    ("rerank", "/v1/rerank", '{"model":"bench","query":"q","documents":["a","b"]}'),
    ("tokenize", "/tokenize", f'{{"model":"bench","prompt":"{HELLO}"}}'),
    ("responses (store: false)", "/v1/responses",
     f'{{"model":"bench","input":"{HELLO}","max_output_tokens":16,"store":false}}'),
    ("responses (stored)", "/v1/responses",
     f'{{"model":"bench","input":"{HELLO}","max_output_tokens":16}}'),
    ("responses, bridged (store: false)", "/v1/responses",
     f'{{"model":"bridged","input":"{HELLO}","max_output_tokens":16,"store":false}}'),
    ("messages", "/v1/messages", f'{{"model":"bench","max_tokens":16,"messages":[{{"role":'
                                 f'"user","content":"{HELLO}"}}]}}'),
    ("messages, bridged", "/v1/messages", f'{{"model":"bridged","max_tokens":16,"messages":'
                                          f'[{{"role":"user","content":"{HELLO}"}}]}}'),
    # Streams of 20 chunks, all at once: the relay's per-chunk work, chat's against a bridge's.
    ("chat stream", "/v1/chat/completions",
     f'{{"model":"bench","messages":[{{"role":"user","content":"{HELLO}"}}],"stream":true}}'),
    ("responses stream, bridged", "/v1/responses",
     f'{{"model":"bridged","input":"{HELLO}","stream":true,"store":false}}'),
    ("messages stream, bridged", "/v1/messages", f'{{"model":"bridged","max_tokens":16,'
     f'"messages":[{{"role":"user","content":"{HELLO}"}}],"stream":true}}'),
]


def run(rounds: int, seconds: float) -> str:
    os.sched_setaffinity(0, {0})
    processes: list[subprocess.Popen[bytes]] = []
    cpu: dict[str, list[float]] = {}
    p50: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="tram-routes-") as tmp:
        try:
            engine_port = free_port()
            processes.append(_start([sys.executable, "-m", "bench.fake_engine", "--port",
                                     str(engine_port)], "0", cwd=ROOT))
            engine = f"http://127.0.0.1:{engine_port}"
            _wait(engine)
            (Path(tmp) / "tram.yaml").write_text(CONFIG.format(engine=engine))
            port = free_port()
            gateway = _start([sys.executable, "-m", "tram", "serve", "--config", "tram.yaml",
                              "--host", "127.0.0.1", "--port", str(port), "--log-level",
                              "warning"], "1", env={**os.environ, "TRAM_MASTER_KEY": KEY},
                             cwd=tmp)
            processes.append(gateway)
            url = f"http://127.0.0.1:{port}"
            _wait(url)
            for _ in range(rounds):
                for name, path, body in CASES:
                    wrk(url, 16, 1, "0", KEY, path, body)  # warm-up
                    before = _cpu_seconds(gateway.pid)
                    result = wrk(url, 16, seconds, "0", KEY, path, body)
                    assert result.errors == 0, (name, result)
                    cpu.setdefault(name, []).append(
                        (_cpu_seconds(gateway.pid) - before) * 1e6 / result.requests)
                    p50.setdefault(name, []).append(result.p50_ms)
        finally:
            stop_processes(processes)
    lines = [f"python -m bench routes --rounds {rounds} --seconds {seconds:g}", "",
             "| route (c=16, master key) | µs CPU/request, median | / chat, median of rounds "
             "| p50 ms | / chat |", "| --- | --- | --- | --- | --- |"]
    for name, _, _ in CASES:
        ratios = [value / chat for value, chat in zip(cpu[name], cpu["chat"], strict=True)]
        lat = [value / chat for value, chat in zip(p50[name], p50["chat"], strict=True)]
        lines.append(f"| {name} | {statistics.median(cpu[name]):.0f} | "
                     f"{statistics.median(ratios):.2f} | {statistics.median(p50[name]):.2f} | "
                     f"{statistics.median(lat):.2f} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench routes")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    print(run(args.rounds, args.seconds))
    return 0
