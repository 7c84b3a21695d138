"""BENCHMARK FAKE ENGINE: a minimal OpenAI-shaped HTTP/1.1 server that is never the bottleneck.

Not an engine: it answers every `POST /v1/chat/completions` with a fixed JSON body, or, for
`"stream": true`, with an SSE stream whose chunk count, chunk size and per-chunk delay come
from the command line (or the request: `bench_chunks`, `bench_delay_ms`). Responses are
pre-encoded bytes written straight to the socket from an asyncio Protocol (uvloop + httptools),
so one core serves tens of thousands of small requests per second.

    python -m bench.fake_engine --port 9001 [--chunks 20] [--chunk-size 8] [--delay-ms 0]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import orjson
import uvloop

from bench.httpproto import RequestProtocol, chunked, http_response

ANSWER = orjson.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": "bench",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
})
JSON_RESPONSE = http_response(ANSWER)
MODELS = b'{"object":"list","data":[{"id":"bench","object":"model"}]}'
MODELS_RESPONSE = http_response(MODELS)
# Any other route (embeddings, rerank, responses, messages, …): one fixed JSON answer with a
# model and usage, which is all the gateway reads of it.
OTHER = orjson.dumps({"object": "list", "model": "bench", "data": [{"index": 0}],
                      "usage": {"prompt_tokens": 5, "total_tokens": 5}})
OTHER_RESPONSE = http_response(OTHER)
# /v1/responses: a completed response object (what the gateway stores when asked).
RESPONSE = orjson.dumps({
    "id": "resp_bench", "object": "response", "created_at": 0, "status": "completed",
    "model": "bench", "output": [{"type": "message", "id": "msg_bench", "role": "assistant",
                                  "status": "completed", "content": [
                                      {"type": "output_text", "text": "ok", "annotations": []}]}],
    "usage": {"input_tokens": 5, "output_tokens": 1, "total_tokens": 6}})
RESPONSE_RESPONSE = http_response(RESPONSE)
STREAM_HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
               b"transfer-encoding: chunked\r\n\r\n")


def stream_frames(chunks: int, chunk_size: int) -> list[bytes]:
    content = "x" * chunk_size
    frames = []
    for _ in range(chunks):
        body = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0,
                "model": "bench", "choices": [{"index": 0, "delta": {"content": content},
                                               "finish_reason": None}]}
        frames.append(chunked(b"data: " + orjson.dumps(body) + b"\n\n"))
    final = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0,
             "model": "bench", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
             "usage": {"prompt_tokens": 5, "completion_tokens": chunks, "total_tokens": 5 + chunks}}
    frames.append(chunked(b"data: " + orjson.dumps(final) + b"\n\n"))
    frames.append(chunked(b"data: [DONE]\n\n") + b"0\r\n\r\n")
    return frames


class EngineProtocol(RequestProtocol):
    def __init__(self, settings: argparse.Namespace, cache: dict[tuple[int, int], list[bytes]]) -> None:
        super().__init__()
        self.settings = settings
        self.cache = cache

    def request(self, url: bytes, body: bytes) -> None:
        assert self.transport is not None
        if not url.endswith(b"/chat/completions"):
            self.transport.write(MODELS_RESPONSE if url.endswith(b"/models")
                                 else RESPONSE_RESPONSE if url.endswith(b"/responses")
                                 else OTHER_RESPONSE)
            return
        if b'"stream":true' not in body.replace(b" ", b""):
            self.transport.write(JSON_RESPONSE)
            return
        request = orjson.loads(body)
        chunks = int(request.get("bench_chunks", self.settings.chunks))
        delay = float(request.get("bench_delay_ms", self.settings.delay_ms)) / 1000
        key = (chunks, self.settings.chunk_size)
        frames = self.cache.get(key) or self.cache.setdefault(key, stream_frames(*key))
        self.transport.write(STREAM_HEAD)
        if delay <= 0:
            self.transport.write(b"".join(frames))
        else:
            asyncio.get_running_loop().create_task(self._paced(frames, delay))

    async def _paced(self, frames: list[bytes], delay: float) -> None:
        start = time.monotonic()
        for i, frame in enumerate(frames):
            if self.transport is None or self.transport.is_closing():
                return
            self.transport.write(frame)
            # Absolute schedule: the engine's own timing error does not accumulate.
            await asyncio.sleep(max(0.0, start + (i + 1) * delay - time.monotonic()))


async def serve(settings: argparse.Namespace) -> None:
    cache: dict[tuple[int, int], list[bytes]] = {}
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: EngineProtocol(settings, cache), "127.0.0.1",
                                      settings.port, backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fake_engine")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--chunk-size", type=int, default=8)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    uvloop.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
