"""Embedded engine benchmark: `tram up` start-up time, and decode tokens/s at 1 and 8 streams.

Starts the real `tram up` (embedded profile) in a temporary folder, then measures, in one run:
- start-up: from launching `tram up` to the first answered chat request (warm: binary and model
  already on disk);
- tokens/s for 1 stream and for 8 concurrent streams, through the gateway and directly against
  the engine (the baseline of the same run), with `ignore_eos` so every request decodes exactly
  `max_tokens` tokens.
Appends a dated table to bench/RESULTS.md with the command and the machine's core count.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.loadgen import free_port
from tram.engines.up import embedded_profile

RESULTS = Path(__file__).with_name("RESULTS.md")
KEY = "sk-bench-" + "x" * 16
PROMPT = [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]



async def _one(client: httpx.AsyncClient, url: str, model: str, max_tokens: int) -> int:
    body = {"model": model, "messages": PROMPT, "max_tokens": max_tokens, "temperature": 0.7,
            "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}
    tokens = 0
    async with client.stream("POST", url + "/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            match = re.search(r'"completion_tokens":(\d+)', line)
            if match:
                tokens = int(match.group(1))
    return tokens


async def _tokens_per_second(url: str, model: str, streams: int, max_tokens: int,
                             rounds: int) -> float:
    headers = {"Authorization": f"Bearer {KEY}"}
    # A fresh connection per request: llama-server closes a keep-alive connection after a few
    # requests, and a request sent on it at that moment fails ("Server disconnected"). Trạm's
    # own engine client retries exactly that case; this load generator need not.
    fresh = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(headers=headers, timeout=600, limits=fresh) as client:
        await _one(client, url, model, 8)  # warm-up
        best = 0.0
        for _ in range(rounds):
            started = time.perf_counter()
            counts = await asyncio.gather(*(_one(client, url, model, max_tokens)
                                            for _ in range(streams)))
            elapsed = time.perf_counter() - started
            best = max(best, sum(counts) / elapsed)
        return best


def _start(folder: Path, port: int, gguf: Path | None) -> tuple[subprocess.Popen[str], float]:
    env = {**os.environ, "TRAM_MASTER_KEY": KEY, "TRAM_DATA_DIR": str(folder / "data")}
    model = ["--model", f"qwen-text={gguf.resolve()}"] if gguf is not None else []
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "tram", "up", "--host", "127.0.0.1",
                                "--port", str(port), *model], cwd=folder, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return process, started


def _first_answer(url: str, started: float, process: subprocess.Popen[str]) -> float:
    body = {"model": "qwen-text", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
    while True:
        if process.poll() is not None:
            raise SystemExit(f"tram up exited: {process.stdout.read() if process.stdout else ''}")
        try:
            response = httpx.post(url + "/v1/chat/completions", json=body, timeout=5,
                                  headers={"Authorization": f"Bearer {KEY}"})
            if response.status_code == 200:
                return time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.05)


def _engine_url(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    for line in process.stdout:
        match = re.search(r"\[engine (http://[^\]]+)\]", line)
        if match:
            return match.group(1) + "/v1"
    raise SystemExit("no engine URL in tram up's banner")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench engine")
    parser.add_argument("what", choices=["engine"])
    parser.add_argument("--quick", action="store_true", help="fewer tokens and rounds")
    parser.add_argument("--no-record", action="store_true", help="print only")
    parser.add_argument("--gguf", type=Path,
                        help="serve this GGUF instead of the embedded default (for comparisons)")
    args = parser.parse_args(argv)
    max_tokens, rounds = (64, 1) if args.quick else (128, 3)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as folder:
        process, started = _start(Path(folder), port, args.gguf)
        try:
            startup = _first_answer(url, started, process)
            engine = _engine_url(process)
            rows = []
            for streams in (1, 8):
                direct = asyncio.run(_tokens_per_second(engine, "SmolLM2-135M-Instruct", streams,
                                                        max_tokens, rounds))
                gateway = asyncio.run(_tokens_per_second(url + "/v1", "qwen-text", streams,
                                                         max_tokens, rounds))
                rows.append((streams, direct, gateway))
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
    single_gateway = rows[0][2]
    served = (args.gguf or Path(embedded_profile()["models"][0]["engine"]["model"])).name
    lines = [
        f"### Embedded engine — {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Command: `python -m bench engine{' --quick' if args.quick else ''}"
        f"{f' --gguf {args.gguf}' if args.gguf else ''}` · "
        f"{os.cpu_count()} cores · {platform.python_version()} · {served} "
        f"on llama-server · {max_tokens} tokens per request, best of {rounds}",
        "",
        f"- `tram up` to first answered request (warm): **{startup:.1f} s**",
        "",
        "| streams | direct to engine tok/s | through gateway tok/s | gateway/direct | "
        "× one stream (gateway) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for streams, direct, gateway in rows:
        lines.append(f"| {streams} | {direct:.1f} | {gateway:.1f} | {gateway / direct:.2f} | "
                     f"{gateway / single_gateway:.2f} |")
    report = "\n".join(lines) + "\n"
    print(report)
    if not args.no_record:
        with RESULTS.open("a", encoding="utf-8") as results:
            results.write("\n" + report)
    return 0
