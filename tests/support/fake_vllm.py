"""FAKE vLLM for FAULT INJECTION in the launch path (an engine that crashes while starting, a
GPU profile that the CPU build cannot run: two engines on one GPU, the VL model); everything a
real engine does is tested against real vLLM's CPU build (tests/engines/test_vllm_real.py).

`python -m tests.support.fake_vllm -m vllm.entrypoints.openai.api_server --model M
[--uds PATH | --host H --port P] --served-model-name N --middleware X ...` (what Trạm runs,
through a TRAM_VLLM_PYTHON shim) behaves as vLLM's OpenAI server does where the gateway and the
supervisor can tell:

- start-up takes a while: the port answers only after FAKE_VLLM_LOAD_SECONDS (default 1),
  then GET /health is 200;
- with VLLM_API_KEY set, every /v1 route needs `Authorization: Bearer <it>` (401 otherwise);
- answers name the served model and carry reasoning under vLLM's current name, `reasoning`
  (thinking is on unless chat_template_kwargs.enable_thinking is false, as Qwen3's template);
  streams send usage when asked (include_usage; continuous_usage_stats on every chunk).

It records what a test checks in FAKE_VLLM_DIR/<served name>.json (argv, the environment it
was given, when it started and became healthy) and each request body in
FAKE_VLLM_DIR/<served name>.requests.jsonl. FAKE_VLLM_CRASH=<served name> makes that engine
die during start-up, as vLLM does when the GPU has no room left.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


def _record_path(served: str, suffix: str) -> Path:
    return Path(os.environ["FAKE_VLLM_DIR"]) / (served.replace("/", "_") + suffix)


def _chunk(served: str, delta: dict[str, Any], finish: str | None = None,
           usage: dict[str, int] | None = None) -> bytes:
    body: dict[str, Any] = {"id": "chatcmpl-vllm", "object": "chat.completion.chunk",
                            "created": int(time.time()), "model": served,
                            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage is not None:
        body["usage"] = usage
    return b"data: " + orjson.dumps(body) + b"\n\n"


def app(served: str, api_key: str | None) -> Starlette:
    requests_log = _record_path(served, ".requests.jsonl")

    def refused(request: Request) -> Response | None:
        if api_key and request.headers.get("authorization") != f"Bearer {api_key}":
            return JSONResponse({"error": "Unauthorized"}, status_code=401)
        return None

    async def health(request: Request) -> Response:
        return Response(status_code=200)

    async def models(request: Request) -> Response:
        return refused(request) or JSONResponse(
            {"object": "list", "data": [{"id": served, "object": "model", "root": served}]})

    async def chat(request: Request) -> Response:
        if (answer := refused(request)) is not None:
            return answer
        body = orjson.loads(await request.body())
        with requests_log.open("ab") as log:
            log.write(orjson.dumps(body) + b"\n")
        if body.get("model") != served:
            return JSONResponse({"error": {"message": f"The model `{body.get('model')}` does "
                                           "not exist.", "type": "NotFoundError", "param": None,
                                           "code": 404}}, status_code=404)
        thinking = (body.get("chat_template_kwargs") or {}).get("enable_thinking", True)
        reasoning = "The user greets me." if thinking else None
        if not body.get("stream"):
            return JSONResponse({
                "id": "chatcmpl-vllm", "object": "chat.completion", "created": int(time.time()),
                "model": served, "choices": [{"index": 0, "finish_reason": "stop", "message": {
                    "role": "assistant", "content": "Xin chào!", "reasoning": reasoning}}],
                "usage": {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16}})
        options = body.get("stream_options") or {}

        async def frames() -> AsyncIterator[bytes]:
            pieces = ([{"reasoning": "The user "}, {"reasoning": "greets me."}] if thinking
                      else []) + [{"content": "Xin "}, {"content": "chào!"}]
            for i, delta in enumerate(pieces):
                running = ({"prompt_tokens": 12, "completion_tokens": i + 1,
                            "total_tokens": 13 + i} if options.get("continuous_usage_stats")
                           else None)
                yield _chunk(served, {"role": "assistant", **delta} if i == 0 else delta,
                             usage=running)
            yield _chunk(served, {}, "stop")
            if options.get("include_usage"):
                usage = {"prompt_tokens": 12, "completion_tokens": len(pieces),
                         "total_tokens": 12 + len(pieces)}
                yield b"data: " + orjson.dumps({"id": "chatcmpl-vllm", "model": served,
                                                "object": "chat.completion.chunk",
                                                "choices": [], "usage": usage}) + b"\n\n"
            yield b"data: [DONE]\n\n"

        return StreamingResponse(frames(), media_type="text/event-stream")

    return Starlette(routes=[Route("/health", health), Route("/v1/models", models),
                             Route("/v1/chat/completions", chat, methods=["POST"])])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-m")  # python -m vllm.entrypoints.openai.api_server, as Trạm runs it
    parser.add_argument("--model")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--uds")
    parser.add_argument("--served-model-name")
    parser.add_argument("--middleware", action="append", default=[])
    args, _ = parser.parse_known_args()
    served = args.served_model_name or args.model
    record = {"argv": sys.argv[1:], "started": time.time(),
              "env": {name: os.environ.get(name) for name in (
                  "CUDA_VISIBLE_DEVICES", "VLLM_API_KEY", "TRAM_ENGINE_KEY", "PYTHONPATH")}}
    _record_path(served, ".json").write_bytes(orjson.dumps(record))
    time.sleep(float(os.environ.get("FAKE_VLLM_LOAD_SECONDS", "1")))  # loading the weights
    if os.environ.get("FAKE_VLLM_CRASH") == served:
        print("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
              file=sys.stderr, flush=True)
        sys.exit(1)
    record["healthy"] = time.time()
    _record_path(served, ".json").write_bytes(orjson.dumps(record))
    served_app: Any = app(served, os.environ.get("VLLM_API_KEY"))
    for middleware in args.middleware:  # as vLLM's --middleware: a class by import path
        module, name = middleware.rsplit(".", 1)
        served_app = getattr(importlib.import_module(module), name)(served_app)
    server = uvicorn.Server(uvicorn.Config(served_app, host=args.host or "127.0.0.1",
                                           port=args.port or 0, uds=args.uds,
                                           log_level="warning"))
    asyncio.run(server.serve())


if __name__ == "__main__":
    main()
