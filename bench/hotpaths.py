"""The gateway's per-request and per-chunk functions, timed alone (µs), for `bench compare`:
steadier than a whole request on a shared machine, so a change of a few µs is visible.

    PYTHONPATH=<tree>/src python -m bench.hotpaths      # prints one JSON object
It runs against whichever `tram` is importable, so it works on older trees too.
"""

from __future__ import annotations

import inspect
import sys
import timeit
from typing import Any

import orjson

CHUNK = orjson.dumps({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
                      "model": "bench", "choices": [{"index": 0, "delta": {"content": "hello"},
                                                     "finish_reason": None}]})
# What vLLM sends when asked for running usage (as the gateway asks it): the usage is the
# chunk's last member, to be taken out when the client did not ask for it.
VLLM_CHUNK = orjson.dumps({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
                           "model": "Qwen/Qwen3-8B", "choices": [
                               {"index": 0, "delta": {"content": "hello"}, "logprobs": None,
                                "finish_reason": None}],
                           "usage": {"prompt_tokens": 12, "total_tokens": 15,
                                     "completion_tokens": 3}})
BODY = {"model": "bench", "messages": [{"role": "user", "content": "hi"}]}


def _best(function: Any, number: int = 20_000) -> float:
    return min(timeit.repeat(function, number=number, repeat=7)) / number * 1e6


def measure() -> dict[str, float]:
    from tram.protocol.chat import ChatCompletionRequest
    from tram.relay import stream
    from tram.requestlog import RequestRecord

    record = RequestRecord("r", "POST", "/v1/chat/completions")
    progress = stream._StreamProgress()
    # The last argument changed type (strip_usage: bool → UsageAsked); both mean "as usual".
    last: Any = stream.UsageAsked() if hasattr(stream, "UsageAsked") else False
    assert len(inspect.signature(stream._rewrite_chunk).parameters) == 5
    return {
        "validate a chat request": _best(lambda: ChatCompletionRequest.model_validate(BODY)),
        "a request's record and usage event":
            _best(lambda: RequestRecord("r", "POST", "/v1/chat/completions").as_usage()),
        "relay one stream chunk":
            _best(lambda: stream._rewrite_chunk(CHUNK, "alias", record, progress, last)),
    } | _chunk_stream(stream, record) | _access_line()


def _access_line() -> dict[str, float]:
    """One access line as `tram serve` writes it by default (INFO, JSON, to stderr: here
    /dev/null), 64 lines a turn of an event loop as under load."""
    import asyncio
    import logging
    import os
    import time

    from tram.logs import setup_logging
    from tram.requestlog import RequestRecord, log_request

    record = RequestRecord("196e9addfd23eb0d8ed54872cbea2b8d", "POST", "/v1/chat/completions")
    record.status, record.key_id, record.model, record.route = 200, "master", "bench", "chat"
    saved_stderr, root = sys.stderr, logging.getLogger()
    saved = root.handlers[:], root.level
    with open(os.devnull, "w") as sink:
        sys.stderr = sink
        try:
            setup_logging("INFO", "json")

            async def turns() -> float:
                best = float("inf")
                for _ in range(7):
                    started = time.perf_counter()
                    for _ in range(300):
                        for _ in range(64):
                            log_request(record)
                        await asyncio.sleep(0)
                    best = min(best, (time.perf_counter() - started) / (300 * 64) * 1e6)
                return best

            cost = asyncio.run(turns())
        finally:
            sys.stderr = saved_stderr
            root.handlers[:], level = saved
            root.setLevel(level)
    return {"write one access line (JSON, at INFO)": cost}


def _chunk_stream(stream: Any, record: Any) -> dict[str, float]:
    """The whole per-chunk step (ChunkStream.event: rewrite and frame), where it exists."""
    if not hasattr(stream, "ChunkStream"):
        return {}
    relay = stream.ChunkStream("alias", record, stream.UsageAsked(final=False, running=False))
    return {"relay one vLLM chunk with running usage (ChunkStream.event)":
            _best(lambda: relay.event(VLLM_CHUNK))}


if __name__ == "__main__":
    print(orjson.dumps(measure()).decode())
    sys.exit(0)
