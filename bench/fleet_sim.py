"""FLEET SIMULATOR: N simulated vLLM replicas, for routing benchmarks and tests only.

Not an engine. Each replica speaks the OpenAI chat API (JSON and SSE) over HTTP/1.1 and models
what routing changes: a prefix cache of token blocks with LRU eviction and a KV capacity,
prefill time per uncached token, decode steps that slow as the running batch grows, a maximum
batch with a waiting queue, and vLLM-shaped `/metrics` (`vllm:num_requests_running`,
`vllm:num_requests_waiting`, `vllm:kv_cache_usage_perc`, `vllm:prefix_cache_queries_total`,
`vllm:prefix_cache_hits_total`). Text is "tokenised" as 4 characters per token.

Calibration (docs/decisions.md): Qwen3-8B BF16 on one H100 with vLLM, ~64 ms time to first
token and ~500 output tokens/s at 4 concurrent requests. A decode step costs 6 ms + 0.5 ms per
running sequence (4 running: 8 ms a step, 500 tok/s), prefill 0.06 ms per uncached token (a
1,000-token prompt: 60 ms + one step ≈ 64-68 ms). The KV capacity (default 160k tokens,
about half of what an H100 holds for this model beside its weights) lets a full batch of
long prompts run, but not every replica keep every conversation.

`--speed S` runs the clock S times faster than real time; every figure a client sees is in
simulated time once multiplied by S.

    python -m bench.fleet_sim --replicas 4 --port 9100 [--speed 2]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import math
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from bench.httpproto import RequestProtocol, chunked, http_response

__all__ = ["FleetConfig", "SimReplica", "render", "serve_fleet"]

CHARS_PER_TOKEN = 4


@dataclass
class FleetConfig:
    block_tokens: int = 16
    kv_capacity_tokens: int = 160_000
    prefill_ms_per_token: float = 0.06
    step_base_ms: float = 6.0
    step_per_seq_ms: float = 0.5
    max_batch: int = 32
    speed: float = 1.0
    stream_every: int = 16  # tokens per SSE chunk after the first


def render(messages: list[dict[str, Any]]) -> str:
    """A chat template's stand-in: what the engine would tokenise."""
    parts = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        parts.append(f"<|{message.get('role')}|>{content or ''}")
    return "".join(parts) + "<|assistant|>"


@dataclass
class _Request:
    blocks: list[int]
    prompt_tokens: int
    max_tokens: int
    tokens: asyncio.Queue[int]
    generated: int = 0
    cached_tokens: int = 0
    owned: int = 0  # decode blocks held while running
    cancelled: bool = False
    started: bool = False


@dataclass
class SimReplica:
    config: FleetConfig
    name: str
    cache: collections.OrderedDict[int, int] = field(default_factory=collections.OrderedDict)
    pinned: collections.Counter[int] = field(default_factory=collections.Counter)
    running: list[_Request] = field(default_factory=list)
    waiting: collections.deque[_Request] = field(default_factory=collections.deque)
    queries: int = 0
    hits: int = 0
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def capacity_blocks(self) -> int:
        return self.config.kv_capacity_tokens // self.config.block_tokens

    def used_blocks(self) -> int:
        return len(self.cache) + sum(r.owned for r in self.running)

    def submit(self, text: str, max_tokens: int) -> _Request:
        size = self.config.block_tokens * CHARS_PER_TOKEN
        blocks, crc = [], 0
        for start in range(0, len(text) - size + 1, size):
            crc = zlib.crc32(text[start:start + size].encode(), crc)
            blocks.append(crc)
        request = _Request(blocks, math.ceil(len(text) / CHARS_PER_TOKEN), max_tokens,
                           asyncio.Queue())
        self.waiting.append(request)
        self._wake.set()
        return request

    def _admit(self) -> int:
        """Move waiting requests into the batch while there is room; the prefill tokens."""
        prefill = 0
        block = self.config.block_tokens
        while self.waiting and len(self.running) < self.config.max_batch:
            request = self.waiting[0]
            if request.cancelled:
                self.waiting.popleft()
                continue
            hit = 0
            for crc in request.blocks:
                if crc not in self.cache:
                    break
                hit += 1
            new_prompt = len(request.blocks) - hit
            decode = math.ceil((request.max_tokens + block) / block)
            if not self._make_room(new_prompt + decode):
                break
            self.waiting.popleft()
            for crc in request.blocks:
                self.cache[crc] = 1
                self.cache.move_to_end(crc)
                self.pinned[crc] += 1
            request.owned = decode
            request.cached_tokens = hit * block
            self.queries += request.prompt_tokens
            self.hits += request.cached_tokens
            prefill += request.prompt_tokens - request.cached_tokens
            self.running.append(request)
        return prefill

    def _make_room(self, blocks: int) -> bool:
        excess = self.used_blocks() + blocks - self.capacity_blocks
        if excess <= 0:
            return True
        for crc in list(self.cache):  # least recently used first; pinned blocks stay
            if excess <= 0:
                break
            if not self.pinned[crc]:
                del self.cache[crc]
                excess -= 1
        return excess <= 0

    def _release(self, request: _Request) -> None:
        for crc in request.blocks:
            self.pinned[crc] -= 1
            if not self.pinned[crc]:
                del self.pinned[crc]
        request.owned = 0

    async def run(self) -> None:
        config = self.config
        while True:
            if not self.running and not self.waiting:
                self._wake.clear()
                await self._wake.wait()
            prefill = self._admit()
            step = config.step_base_ms + config.step_per_seq_ms * len(self.running) \
                + prefill * config.prefill_ms_per_token
            await asyncio.sleep(step / 1000 / config.speed)
            still = []
            for request in self.running:
                if request.cancelled:
                    self._release(request)
                    continue
                request.generated += 1
                request.tokens.put_nowait(request.generated)
                if request.generated >= request.max_tokens:
                    self._release(request)
                else:
                    still.append(request)
            self.running = still

    def metrics(self) -> bytes:
        usage = min(1.0, self.used_blocks() / max(self.capacity_blocks, 1))
        name = f'model_name="{self.name}"'
        return (f"vllm:num_requests_running{{{name}}} {len(self.running)}\n"
                f"vllm:num_requests_waiting{{{name}}} {len(self.waiting)}\n"
                f"vllm:kv_cache_usage_perc{{{name}}} {usage:.4f}\n"
                f"vllm:prefix_cache_queries_total{{{name}}} {self.queries}\n"
                f"vllm:prefix_cache_hits_total{{{name}}} {self.hits}\n").encode()


class _Protocol(RequestProtocol):
    def __init__(self, replica: SimReplica) -> None:
        super().__init__()
        self.replica = replica
        self.current: _Request | None = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.current is not None:
            self.current.cancelled = True  # the client left: the engine stops working for it
        self.transport = None

    def request(self, url: bytes, body: bytes) -> None:
        if url.endswith(b"/metrics"):
            self.transport.write(http_response(self.replica.metrics(), kind=b"text/plain"))
        elif url.endswith(b"/chat/completions"):
            asyncio.get_running_loop().create_task(self._chat(orjson.loads(body)))
        elif url.endswith((b"/models", b"/health")):
            self.transport.write(http_response(b'{"object":"list","data":[]}'))
        else:
            self.transport.write(http_response(b'{"error":{"message":"no"}}', b"404 Not Found"))

    async def _chat(self, body: dict[str, Any]) -> None:
        text = render(body.get("messages") or [])
        max_tokens = int(body.get("max_tokens") or 16)
        request = self.replica.submit(text, max_tokens)
        self.current = request
        model = body.get("model", "sim")
        stream = bool(body.get("stream"))
        usage_wanted = bool((body.get("stream_options") or {}).get("include_usage"))
        every = self.replica.config.stream_every
        if stream and self.transport:
            self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                                 b"transfer-encoding: chunked\r\n\r\n")
        sent = 0
        while request.generated < max_tokens or not request.tokens.empty():
            count = await request.tokens.get()
            if self.transport is None:
                return
            if stream and (sent == 0 or count - sent >= every or count == max_tokens):
                delta = {"content": "".join(f"w{i} " for i in range(sent, count))}
                if sent == 0:
                    delta["role"] = "assistant"
                chunk = {"id": "sim", "object": "chat.completion.chunk", "model": model,
                         "choices": [{"index": 0, "delta": delta, "finish_reason":
                                      "length" if count == max_tokens else None}]}
                self.transport.write(chunked(b"data: " + orjson.dumps(chunk) + b"\n\n"))
                sent = count
            if count == max_tokens:
                break
        self.current = None
        usage = {"prompt_tokens": request.prompt_tokens, "completion_tokens": max_tokens,
                 "total_tokens": request.prompt_tokens + max_tokens,
                 "prompt_tokens_details": {"cached_tokens": request.cached_tokens}}
        if self.transport is None:
            return
        if stream:
            tail = b""
            if usage_wanted:
                tail += b"data: " + orjson.dumps({"id": "sim", "object": "chat.completion.chunk",
                                                  "model": model, "choices": [],
                                                  "usage": usage}) + b"\n\n"
            tail += b"data: [DONE]\n\n"
            self.transport.write(chunked(tail) + b"0\r\n\r\n")
        else:
            answer = {"id": "sim", "object": "chat.completion", "created": int(time.time()),
                      "model": model, "usage": usage, "choices": [{
                          "index": 0, "finish_reason": "length", "message": {
                              "role": "assistant",
                              "content": "".join(f"w{i} " for i in range(max_tokens))}}]}
            self.transport.write(http_response(orjson.dumps(answer)))


async def serve_fleet(replicas: int, port: int, config: FleetConfig,
                      started: asyncio.Event | None = None) -> None:
    """Serve `replicas` simulated engines on ports port, port+1, … until cancelled."""
    loop = asyncio.get_running_loop()
    servers, engines = [], []
    for index in range(replicas):
        replica = SimReplica(config, f"sim-{index}")
        engines.append(asyncio.ensure_future(replica.run()))
        servers.append(await loop.create_server(lambda r=replica: _Protocol(r), "127.0.0.1",
                                                port + index, backlog=4096))
    if started is not None:
        started.set()
    try:
        await asyncio.gather(*(server.serve_forever() for server in servers))
    finally:
        for task in engines:
            task.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet_sim")
    parser.add_argument("--replicas", type=int, default=4)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--kv-capacity-tokens", type=int, default=160_000)
    parser.add_argument("--max-batch", type=int, default=32)
    args = parser.parse_args()
    config = FleetConfig(speed=args.speed, kv_capacity_tokens=args.kv_capacity_tokens,
                         max_batch=args.max_batch)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve_fleet(args.replicas, args.port, config))


if __name__ == "__main__":
    main()
