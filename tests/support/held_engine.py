"""SCRIPTED SATURATED ENGINE: a fault-injection stand-in for an OpenAI-compatible engine that
is full. It answers chat completions, but holds every request until the test releases it, so
the gateway's fair queue (src/tram/sharing/) decides what reaches it and in which order. It
exists only for saturation tests; what users rely on is tested on the real embedded engine.

`arrived` lists each request's first message content in the order the engine got them,
`arrived_at` when.
`waiting`, when set, is what its scripted /metrics reports as vLLM's
`vllm:num_requests_waiting` (the engines' own queue, the gateway's saturation signal); None:
no /metrics (404), as an engine that exports none.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

__all__ = ["HeldEngine"]


class HeldEngine:
    def __init__(self) -> None:
        self.arrived: list[str] = []
        self.arrived_at: list[float] = []  # time.monotonic() of each arrival
        self._released = 0
        self._lock = threading.Lock()
        self.waiting: int | None = None
        self.scrapes = 0
        self.app = Starlette(routes=[
            Route("/v1/chat/completions", self._chat, methods=["POST"]),
            Route("/v1/models", self._models),
            Route("/metrics", self._metrics)])

    def release(self, count: int = 1) -> None:
        """Let the oldest `count` held requests answer."""
        with self._lock:
            self._released += count

    def wait_arrived(self, count: int, timeout: float = 10.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while len(self.arrived) < count:
            assert time.monotonic() < deadline, f"only {self.arrived} arrived"
            time.sleep(0.01)
        return self.arrived[:count]

    async def _models(self, request: Request) -> Response:
        return Response(orjson.dumps({"object": "list", "data": [
            {"id": "held", "object": "model", "owned_by": "test"}]}),
            media_type="application/json")

    async def _metrics(self, request: Request) -> Response:
        if self.waiting is None:
            return Response("not found", status_code=404)
        self.scrapes += 1
        held = len(self.arrived) - min(self._released, len(self.arrived))
        return Response(
            "# TYPE vllm:num_requests_waiting gauge\n"
            f'vllm:num_requests_waiting{{model_name="held"}} {self.waiting}\n'
            "# TYPE vllm:num_requests_running gauge\n"
            f'vllm:num_requests_running{{model_name="held"}} {held}\n',
            media_type="text/plain; version=0.0.4")

    async def _chat(self, request: Request) -> Response:
        body: dict[str, Any] = orjson.loads(await request.body())
        index = len(self.arrived)
        self.arrived.append(str(body["messages"][0]["content"]))
        self.arrived_at.append(time.monotonic())
        while self._released <= index:  # noqa: ASYNC110 (released from the test's thread)
            await asyncio.sleep(0.005)
        return Response(orjson.dumps({
            "id": f"chatcmpl-held-{index}", "object": "chat.completion",
            "created": int(time.time()), "model": body.get("model", "held"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "ok"}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }), media_type="application/json")
