"""FAULT-INJECTION ENGINE: a fake OpenAI-compatible engine for testing failure handling only.

Everything a user relies on is tested against the real embedded engine; this fake exists to
produce what a real engine rarely does on demand: errors, hangs, cut streams, and to observe
from the engine side whether the gateway cancelled a request. The behaviour is chosen by the
`model` the gateway forwards (the upstream's served_name):

  echo           JSON answer; `received` holds the exact body the engine got
  stream         SSE, `chunks` chunks (default 5), then [DONE]
  slow-stream    SSE, `chunks` chunks (default 200) 50 ms apart; records cancellation; with
                 stream_options.continuous_usage_stats, vLLM's running usage (3 tokens a chunk)
  slow-json      JSON after 10 s; records cancellation
  delay-json     JSON after `delay` seconds (default 0.2): keeps requests in flight
  error-400      OpenAI 400 error      error-404   404 (model unknown to the engine)
  error-500      plain-text 500        error-503   503 (loading)
  hang           never sends headers
  cut-stream     2 chunks, then the connection is dropped
  idle-stream    1 chunk, then silence
  not-json       200 with a body that is not JSON
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class EngineLog:
    received: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)


def _chunk(model: str, index: int, content: str | None, finish: str | None = None,
           running: dict[str, int] | None = None) -> bytes:
    delta: dict[str, Any] = {"content": content} if content is not None else {}
    if index == 0:
        delta["role"] = "assistant"
    body: dict[str, Any] = {
        "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if running is not None:
        body["usage"] = running
    return b"data: " + orjson.dumps(body) + b"\n\n"


def _running_usage(body: dict[str, Any], index: int) -> dict[str, int] | None:
    """vLLM's continuous_usage_stats: usage on every chunk; here each chunk is 3 tokens, so a
    test can tell the engine's count from the gateway's count of relayed deltas."""
    if not (body.get("stream_options") or {}).get("continuous_usage_stats"):
        return None
    return {"prompt_tokens": 7, "completion_tokens": 3 * (index + 1),
            "total_tokens": 7 + 3 * (index + 1)}


def _answer(model: str, received: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "fake answer"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
        "received": received,
    }


def fault_engine(log: EngineLog) -> Starlette:
    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "fake", "object": "model"}]})

    async def chat(request: Request) -> Response:
        body = orjson.loads(await request.body())
        log.received.append(body)
        log.headers.append(dict(request.headers))
        mode = body.get("model", "")
        rid = request.headers.get("x-request-id", "")
        if mode == "echo":
            return JSONResponse(_answer(mode, body))
        if mode.startswith("error-"):
            status = int(mode.split("-")[1])
            if status == 500:
                return Response("engine exploded", status_code=500)
            return JSONResponse({"error": {"message": f"engine says {status}", "type": "BadRequestError",
                                           "param": "messages", "code": None}}, status_code=status)
        if mode == "not-json":
            return Response("<html>oops</html>", media_type="text/html")
        if mode == "hang":
            await asyncio.sleep(3600)
        if mode == "delay-json":
            await asyncio.sleep(float(body.get("delay", 0.2)))
            return JSONResponse(_answer(mode, body))
        if mode == "slow-json":
            # Like vLLM: the engine polls for a disconnected client while it generates.
            for _ in range(200):
                await asyncio.sleep(0.05)
                if await request.is_disconnected():
                    log.cancelled.append(rid)
                    return Response(status_code=499)
            return JSONResponse(_answer(mode, body))

        async def frames() -> AsyncIterator[bytes]:
            if mode == "stream":
                count = int(body.get("chunks", 5))
                for i in range(count):
                    yield _chunk(mode, i, f"t{i} ")
                yield _chunk(mode, count, None, "stop")
                if (body.get("stream_options") or {}).get("include_usage"):
                    usage = {"prompt_tokens": 7, "completion_tokens": count,
                             "total_tokens": 7 + count}
                    yield b"data: " + orjson.dumps({"id": "chatcmpl-fake", "model": mode,
                                                    "object": "chat.completion.chunk",
                                                    "choices": [], "usage": usage}) + b"\n\n"
                yield b"data: [DONE]\n\n"
            elif mode == "slow-stream":
                try:
                    count = int(body.get("chunks", 200))
                    for i in range(count):
                        yield _chunk(mode, i, f"t{i} ", running=_running_usage(body, i))
                        await asyncio.sleep(0.05)
                    yield _chunk(mode, count, None, "stop")
                    yield b"data: [DONE]\n\n"
                    log.finished.append(rid)
                except (asyncio.CancelledError, GeneratorExit):
                    log.cancelled.append(rid)
                    raise
            elif mode == "cut-stream":
                yield _chunk(mode, 0, "a")
                yield _chunk(mode, 1, "b")
                raise RuntimeError("engine died mid-stream (injected)")
            elif mode == "idle-stream":
                yield _chunk(mode, 0, "a")
                await asyncio.sleep(3600)

        return StreamingResponse(frames(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/models", models), Route("/v1/chat/completions", chat,
                                                                   methods=["POST"])])
