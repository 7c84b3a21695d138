"""The embedded engine's context per slot: memory and speed of SmolLM2 on llama-server at
4,096 tokens per slot (before issue #25) and 8,192 (SmolLM2's trained context, what the coding
agents' first turns need: 4-8K tokens of system prompt and tools).

Each setting's llama-server is started exactly as `tram up`'s embedded profile starts it
(`engine_command` on the profile's own engine config, only `context` changed; 8 slots), all of
them at once, on loopback ports, and measured directly (no gateway):
- RSS once started (llama.cpp allocates and clears the KV cache at start: it is resident);
- the RSS after a 3,500-token prompt, and that prompt's prefill tokens/s (fits both settings;
  prompt cache off);
- whether a Codex-sized first turn (4,400 tokens) is accepted;
- decode tokens/s with 1 and 8 concurrent streams (`ignore_eos`, N tokens each).
The speed rounds alternate between the settings (the machine may be shared: its load then weighs
on both alike); each speed is the median of its rounds. Appends a table to
bench/RESULTS.md with the command, the core count and the load average (the machine is shared).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import secrets
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from bench.loadgen import free_port
from tram.config import parse_config
from tram.engines.up import embedded_profile
from tram.kinds import Listen

RESULTS = Path(__file__).with_name("RESULTS.md")
SENTENCE = "The lighthouse keeper wrote the weather in his log every evening. "


def _start(context: int) -> tuple[subprocess.Popen[bytes], str, str]:
    model = parse_config(embedded_profile(), "bench").models[0]
    assert model.engine is not None
    engine = model.engine.model_copy(update={"context": context})
    key = "sk-bench-" + secrets.token_urlsafe(12)
    port = free_port()
    command = engine.command(model.name, Listen(port=port), key)
    process = subprocess.Popen(command.argv, env={**os.environ, **command.env},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return process, url, key
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"llama-server (context {context}) did not start")
        time.sleep(0.2)


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _chat(url: str, key: str, text: str, **extra: Any) -> httpx.Response:
    body = {"model": "SmolLM2-135M-Instruct", "cache_prompt": False,
            "messages": [{"role": "user", "content": text}], **extra}
    return httpx.post(url + "/v1/chat/completions", json=body, timeout=1800,
                      headers={"Authorization": f"Bearer {key}"})


def _tokens(url: str, key: str, text: str) -> int:
    answer = httpx.post(url + "/tokenize", json={"content": text}, timeout=60,
                        headers={"Authorization": f"Bearer {key}"})
    answer.raise_for_status()
    return len(answer.json()["tokens"])


def _text_of(url: str, key: str, tokens: int) -> str:
    """SENTENCE repeated to about `tokens` tokens (as the engine's tokenizer counts them)."""
    per = (_tokens(url, key, SENTENCE * 21) - _tokens(url, key, SENTENCE)) / 20
    return SENTENCE * round(tokens / per)


def _prefill(url: str, key: str, text: str) -> tuple[int, float | None]:
    """(the prompt's token count, prefill tokens/s), or (HTTP status, None) if refused."""
    response = _chat(url, key, text, max_tokens=1)
    if response.status_code != 200:
        return response.status_code, None
    timings = response.json()["timings"]
    return int(timings["prompt_n"]), float(timings["prompt_per_second"])


async def _decode(url: str, key: str, streams: int, max_tokens: int) -> float:
    body = {"model": "SmolLM2-135M-Instruct", "max_tokens": max_tokens, "ignore_eos": True,
            "messages": [{"role": "user", "content": "Write a long story about a lighthouse."}]}
    headers = {"Authorization": f"Bearer {key}"}
    fresh = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(headers=headers, timeout=1800, limits=fresh) as client:
        started = time.perf_counter()
        answers = await asyncio.gather(*(client.post(url + "/v1/chat/completions", json=body)
                                         for _ in range(streams)))
        elapsed = time.perf_counter() - started
    return sum(a.json()["usage"]["completion_tokens"] for a in answers) / elapsed


def _round(url: str, key: str, max_tokens: int) -> dict[str, float]:
    """One round of the speed measurements on one engine."""
    _, prefill = _prefill(url, key, _text_of(url, key, 3500))
    return {"prefill": prefill or 0.0,
            **{f"decode_{n}": asyncio.run(_decode(url, key, n, max_tokens)) for n in (1, 8)}}


def _measure(contexts: list[int], rounds: int, max_tokens: int) -> dict[int, dict[str, float]]:
    """Every setting's engine runs at once (idle but for the one measured), so that the
    rounds of each alternate within minutes and a shared machine's load weighs on both."""
    engines = {context: _start(context) for context in contexts}
    try:
        rows: dict[int, dict[str, float]] = {}
        for context, (process, url, key) in engines.items():
            row = {"rss_start": _rss_mib(process.pid)}
            row["prompt_n"], _ = _prefill(url, key, _text_of(url, key, 3500))
            row["rss_after"] = _rss_mib(process.pid)
            row["agent_n"], agent = _prefill(url, key, _text_of(url, key, 4400))
            row["agent_ok"] = 1.0 if agent is not None else 0.0
            rows[context] = row
        samples: dict[int, list[dict[str, float]]] = {c: [] for c in contexts}
        for index in range(rounds):
            for context in contexts if index % 2 == 0 else list(reversed(contexts)):
                _, url, key = engines[context]
                samples[context].append(_round(url, key, max_tokens))
        for context, row in rows.items():
            for name in ("prefill", "decode_1", "decode_8"):
                row[name] = statistics.median(s[name] for s in samples[context])
        return rows
    finally:
        for process, _, _ in engines.values():
            process.terminate()
            process.wait(30)


def _report(results: dict[int, dict[str, float]], args: argparse.Namespace,
            load: str) -> str:
    now = datetime.datetime.now(datetime.UTC)
    lines = [
        f"### Embedded engine, context per slot — {now:%Y-%m-%d %H:%M} UTC",
        "",
        f"Command: `python -m bench context --rounds {args.rounds} --tokens {args.tokens}` · "
        f"{os.cpu_count()} cores (shared; load average before: {load}) · "
        f"{platform.python_version()} · SmolLM2-135M-Instruct Q8_0 on llama-server, 8 slots, "
        f"started as the embedded profile starts it, both at once · speeds: median of "
        f"{args.rounds} alternating rounds",
        "",
        "| context per slot | RSS started (MiB) | RSS after a 3.5K prompt (MiB) | prefill tok/s "
        "(3.5K prompt) | Codex-sized 4.4K prompt | decode tok/s, 1 stream | 8 streams |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for context, row in results.items():
        agent = f"accepted ({row['agent_n']:.0f} tokens)" if row["agent_ok"] else \
            f"refused (HTTP {row['agent_n']:.0f})"
        lines.append(f"| {context:,} | {row['rss_start']:.0f} | {row['rss_after']:.0f} | "
                     f"{row['prefill']:.0f} | {agent} | {row['decode_1']:.1f} | "
                     f"{row['decode_8']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench context")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128, help="decoded per stream")
    parser.add_argument("--contexts", default="4096,8192", help="tokens per slot, comma-separated")
    parser.add_argument("--no-record", action="store_true", help="print only")
    args = parser.parse_args(argv)
    contexts = [int(c) for c in args.contexts.split(",")]
    load = Path("/proc/loadavg").read_text().split()[0]
    report = _report(_measure(contexts, args.rounds, args.tokens), args, load)
    print(report)
    if not args.no_record:
        with RESULTS.open("a", encoding="utf-8") as results:
            results.write("\n" + report)
    return 0
