"""FLEET SIMULATOR: N simulated vLLM replicas, for routing benchmarks and tests only.

Not an engine. Each replica speaks the OpenAI chat API (JSON and SSE) over HTTP/1.1 and runs
bench/engine_model.py's model of vLLM's scheduler in real time: a prefix cache of token blocks
with LRU eviction and a KV capacity, prefill time per uncached token, decode steps that slow as
the running batch grows, a maximum batch with a waiting queue, FCFS or priority scheduling
(`--scheduling-policy`, a request's `priority` field as vLLM reads it) with preemption when
blocks run out, and vLLM-shaped `/metrics` (`vllm:num_requests_running`,
`vllm:num_requests_waiting`, `vllm:kv_cache_usage_perc`, `vllm:prefix_cache_queries_total`,
`vllm:prefix_cache_hits_total`, `vllm:num_preemptions_total`). Text is "tokenised" as 4
characters per token.

Calibration (docs/decisions.md): Qwen3-8B BF16 on one H100 with vLLM, ~64 ms time to first
token and ~500 output tokens/s at 4 concurrent requests. A decode step costs 6 ms + 0.5 ms per
running sequence (4 running: 8 ms a step, 500 tok/s), prefill 0.06 ms per uncached token (a
1,000-token prompt: 60 ms + one step ≈ 64-68 ms). The KV capacity (default 160k tokens,
about half of what an H100 holds for this model beside its weights) lets a full batch of
long prompts run, but not every replica keep every conversation.

`--speed S` runs the clock S times faster than real time; every figure a client sees is in
simulated time once multiplied by S.

    python -m bench.fleet_sim --replicas 4 --port 9100 [--speed 2] [--scheduling-policy priority]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from bench.engine_model import EngineConfig, EngineModel, SimRequest
from bench.httpproto import RequestProtocol, chunked, http_response

__all__ = ["FleetConfig", "SimReplica", "render", "serve_fleet"]

FleetConfig = EngineConfig  # the name this module has always exported


def render(messages: list[dict[str, Any]]) -> str:
    """A chat template's stand-in: what the engine would tokenise."""
    parts = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        parts.append(f"<|{message.get('role')}|>{content or ''}")
    return "".join(parts) + "<|assistant|>"


@dataclass(eq=False)
class _Stream:
    """A request's tokens as the engine produces them, for the connection that sent it."""

    request: SimRequest
    tokens: asyncio.Queue[int] = field(default_factory=asyncio.Queue)


class SimReplica:
    """An EngineModel stepped in (sped-up) real time."""

    def __init__(self, config: EngineConfig, name: str) -> None:
        self.config = config
        self.name = name
        self.model = EngineModel(config)
        self._streams: dict[int, _Stream] = {}
        self._wake = asyncio.Event()

    def submit(self, text: str, max_tokens: int, priority: int = 0) -> _Stream:
        stream = _Stream(self.model.submit(text, max_tokens, priority))
        self._streams[id(stream.request)] = stream
        self._wake.set()
        return stream

    def cancel(self, stream: _Stream) -> None:
        self.model.cancel(stream.request)
        self._streams.pop(id(stream.request), None)
        stream.tokens.put_nowait(-1)  # the connection's task stops waiting

    async def run(self) -> None:
        model, speed = self.model, self.config.speed
        while True:
            if model.idle():
                self._wake.clear()
                await self._wake.wait()
            step_ms = model.begin_step()
            await asyncio.sleep(step_ms / 1000 / speed)
            for request in model.end_step():
                stream = self._streams.get(id(request))
                if stream is None:
                    continue
                stream.tokens.put_nowait(request.generated)
                if request.done:
                    del self._streams[id(request)]

    def metrics(self) -> bytes:
        return self.model.metrics(self.name)


class _Protocol(RequestProtocol):
    def __init__(self, replica: SimReplica) -> None:
        super().__init__()
        self.replica = replica
        self.current: _Stream | None = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.current is not None:
            self.replica.cancel(self.current)  # the client left: the engine stops working
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
        handle = self.replica.submit(text, max_tokens, int(body.get("priority") or 0))
        self.current = handle
        request, tokens = handle.request, handle.tokens
        model = body.get("model", "sim")
        stream = bool(body.get("stream"))
        usage_wanted = bool((body.get("stream_options") or {}).get("include_usage"))
        every = self.replica.config.stream_every
        if stream and self.transport:
            self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                                 b"transfer-encoding: chunked\r\n\r\n")
        sent = 0
        while True:
            count = await tokens.get()
            if self.transport is None or count < 0:
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
    parser.add_argument("--scheduling-policy", choices=("fcfs", "priority"), default="fcfs")
    args = parser.parse_args()
    config = FleetConfig(speed=args.speed, kv_capacity_tokens=args.kv_capacity_tokens,
                         max_batch=args.max_batch, scheduling=args.scheduling_policy)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve_fleet(args.replicas, args.port, config))


if __name__ == "__main__":
    main()
