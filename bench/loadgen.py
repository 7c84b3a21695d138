"""Load generators: wrk (with a Lua POST script) for request rates, and a raw asyncio client
for streams (streams/s, time to first byte, gaps between chunks). Both run pinned to the core
of the fake engine, away from the proxy under test."""

from __future__ import annotations

import asyncio
import itertools
import math
import re
import socket
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

KEY = "sk-bench-" + "x" * 16
CHAT_BODY = ('{"model":"bench","messages":[{"role":"user","content":"Hello, how can you help '
             'me?"}],"max_tokens":16}')

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
"""


@dataclass
class RateResult:
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    requests: int
    errors: int
    timeouts: int = 0  # of the errors: answers slower than wrk's 2 s timeout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(url: str, connections: int, seconds: float, cpu: str, key: str = KEY,
        path: str = "/v1/chat/completions", body: str = CHAT_BODY) -> RateResult:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT.format(body=body, key=key))
    out = subprocess.run(
        ["taskset", "-c", cpu, "wrk", "-t1", f"-c{connections}", f"-d{math.ceil(seconds)}s", "--latency",
         "-s", script.name, url + path],
        capture_output=True, text=True, check=True).stdout
    latency = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)", out, re.M))
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return RateResult(
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        p50_ms=_ms(latency["50"]), p90_ms=_ms(latency["90"]), p99_ms=_ms(latency["99"]),
        requests=int(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
        errors=errors + (int(non_2xx.group(1)) if non_2xx else 0),
        timeouts=sum(int(n) for n in re.findall(r"timeout (\d+)", out)),
    )


def _request(url: str, chunks: int, delay_ms: float) -> bytes:
    parts = urlsplit(url)
    body = (f'{{"model":"bench","messages":[{{"role":"user","content":"hi"}}],"stream":true,'
            f'"bench_chunks":{chunks},"bench_delay_ms":{delay_ms}}}').encode()
    return (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Authorization: Bearer {KEY}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def _one_stream(host: str, port: int, request: bytes) -> tuple[float, list[float], bool]:
    """(time to first data byte, gaps between data events, ended with [DONE])."""
    reader, writer = await asyncio.open_connection(host, port)
    started = time.perf_counter()
    writer.write(request)
    first = None
    arrivals: list[float] = []
    buffer = b""
    done = False
    try:
        while not done:
            data = await reader.read(65536)
            if not data:
                break
            now = time.perf_counter()
            if first is None and b"data:" in data:
                first = now - started
            buffer += data
            events = buffer.count(b"data: ")
            arrivals.extend([now] * (events - len(arrivals)))
            done = b"data: [DONE]" in buffer
    finally:
        writer.close()
    gaps = [b - a for a, b in itertools.pairwise(arrivals) if b > a]
    return first or 0.0, gaps, done


async def _streams(url: str, concurrency: int, total: int, chunks: int,
                   delay_ms: float) -> tuple[float, list[float], list[float], int]:
    parts = urlsplit(url)
    request = _request(url, chunks, delay_ms)
    semaphore = asyncio.Semaphore(concurrency)
    ttfb: list[float] = []
    gaps: list[float] = []
    failures = 0

    async def run() -> None:
        nonlocal failures
        async with semaphore:
            try:
                first, spaced, done = await _one_stream(parts.hostname or "", parts.port or 80,
                                                        request)
            except OSError:
                failures += 1
                return
            ttfb.append(first)
            gaps.extend(spaced)
            failures += 0 if done else 1

    started = time.perf_counter()
    await asyncio.gather(*(run() for _ in range(total)))
    return time.perf_counter() - started, ttfb, gaps, failures


@dataclass
class StreamResult:
    streams_per_s: float
    ttfb_p50_ms: float
    gap_p99_ms: float
    failures: int


def streams(url: str, concurrency: int, total: int, chunks: int, delay_ms: float) -> StreamResult:
    elapsed, ttfb, gaps, failures = asyncio.run(_streams(url, concurrency, total, chunks, delay_ms))
    gaps_sorted = sorted(gaps)
    p99 = gaps_sorted[int(len(gaps_sorted) * 0.99)] if gaps_sorted else 0.0
    return StreamResult(total / elapsed, statistics.median(ttfb) * 1000 if ttfb else 0.0,
                        p99 * 1000, failures)
