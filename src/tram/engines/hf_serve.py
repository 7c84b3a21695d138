"""Engine side: `python -m tram.engines.hf_serve MODEL [--served-name N] [--host H --port P |
--uds PATH] [--device auto|cpu|cuda]`.

A small OpenAI-compatible server for one checkpoint on transformers' public API
(`hf_generate`): `GET /health`, `GET /v1/models`, `POST /v1/chat/completions` (text and image
parts, streaming, usage, continuous usage stats). It replaced `transformers serve`, whose
processor loading Trạm had to patch through a private method to serve Qwen-VL without
torchvision: the next transformers release removed that method and the engine stopped starting
(docs/decisions.md, "The vision engine on CPU").

Every path but `GET /health` needs `Authorization: Bearer $TRAM_ENGINE_KEY` (the engine guard),
and `tram up` starts it on a Unix socket in a private folder: the gateway alone reaches it.
Generation runs one request at a time in a worker thread (each uses every core); a client
that goes away stops its generation at the next token.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tram.engines.hf_generate import Generation, LoadedModel, RequestError, load
from tram.kinds.guard.tram_engine_guard import EngineKeyGuard

__all__ = ["build_app", "main"]


def _error(message: str, status: int = 400, param: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error",
                                   "param": param, "code": None}}, status_code=status)


def _usage(generation: Generation) -> dict[str, int]:
    return {"prompt_tokens": generation.prompt_tokens,
            "completion_tokens": generation.completion_tokens,
            "total_tokens": generation.prompt_tokens + generation.completion_tokens}


class _Chat:
    def __init__(self, model: LoadedModel, served_name: str) -> None:
        self.model = model
        self.served_name = served_name

    async def handle(self, request: Request) -> Response:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return _error("The body must be JSON.")
        if not isinstance(body, dict):
            return _error("The body must be a JSON object.")
        try:
            inputs, generation = await asyncio.to_thread(self.model.prepare, body)
        except RequestError as exc:
            return _error(str(exc), param=exc.param)
        worker = asyncio.ensure_future(asyncio.to_thread(self.model.run, inputs, generation, body))
        base = {"id": "chatcmpl-" + secrets.token_hex(12), "created": int(time.time()),
                "model": self.served_name}
        if body.get("stream"):
            options = body.get("stream_options") or {}
            return StreamingResponse(self._chunks(base, generation, worker, options),
                                     media_type="text/event-stream")
        try:
            text = "".join([piece async for piece in _pieces(generation)])
            await worker
        finally:
            generation.cancelled.set()
        return JSONResponse({**base, "object": "chat.completion", "choices": [{
            "index": 0, "message": {"role": "assistant", "content": text},
            "finish_reason": generation.finish_reason}], "usage": _usage(generation)})

    async def _chunks(self, base: dict[str, Any], generation: Generation,
                      worker: asyncio.Future[None], options: dict[str, Any]) -> AsyncIterator[bytes]:
        running = bool(options.get("continuous_usage_stats"))

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            event: dict[str, Any] = {**base, "object": "chat.completion.chunk", "choices": [
                {"index": 0, "delta": delta, "finish_reason": finish}]}
            if running:
                event["usage"] = _usage(generation)
            return b"data: " + orjson.dumps(event) + b"\n\n"

        try:
            yield chunk({"role": "assistant", "content": ""})
            async for piece in _pieces(generation):
                yield chunk({"content": piece})
            await worker
            yield chunk({}, generation.finish_reason)
            if options.get("include_usage"):
                yield b"data: " + orjson.dumps({**base, "object": "chat.completion.chunk",
                                                "choices": [], "usage": _usage(generation)}) + b"\n\n"
            yield b"data: [DONE]\n\n"
        finally:
            generation.cancelled.set()  # a client that left: stop at the next token


async def _pieces(generation: Generation) -> AsyncIterator[str]:
    while (piece := await asyncio.to_thread(generation.pieces.get)) is not None:
        yield piece


def build_app(model: LoadedModel, served_name: str) -> Starlette:
    card = {"id": served_name, "object": "model", "created": int(time.time()), "owned_by": "tram",
            "max_model_len": model.context or None}

    async def health(request: Request) -> Response:
        return Response(status_code=200)

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [card]})

    return Starlette(routes=[
        Route("/health", health, methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/chat/completions", _Chat(model, served_name).handle, methods=["POST"]),
    ])


def main(argv: list[str]) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m tram.engines.hf_serve")
    parser.add_argument("model")
    parser.add_argument("--served-name")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--uds", help="listen on this Unix socket instead of host:port")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local checkpoints only: no hub look-ups
    guarded = EngineKeyGuard(build_app(load(args.model, args.device), args.served_name or args.model))
    uvicorn.run(guarded, host=args.host, port=args.port, uds=args.uds, log_level="warning",
                access_log=False)


if __name__ == "__main__":
    main(sys.argv[1:])
