"""The chat completion service: check, route, forward, relay.

`ChatService.create` returns a value: `JSONResult` (a complete answer) or `StreamResult` (SSE
frames to send as they come). It raises a `TramError` for anything the client must be told
before a response starts; once a stream has started, errors become an SSE error event followed
by `data: [DONE]` instead of a cut connection.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import orjson
from pydantic import ValidationError

from tram.auth.keys import Principal
from tram.config import Timeouts, VisionConfig
from tram.errors import (
    EngineBadResponse,
    EngineTimeout,
    EngineUnavailable,
    ImagesNotSupported,
    InvalidRequest,
    ModelNotFound,
    TramError,
)
from tram.protocol.chat import ChatCompletionRequest
from tram.relay.sse import DONE, SSEDecoder, data_frame, done_frame, error_frame
from tram.relay.validation import invalid_request_from
from tram.requestlog import RequestRecord
from tram.routing.registry import ModelPool, Registry
from tram.routing.upstream import UpstreamClient, engine_error
from tram.vision.fetch import ImageFetcher
from tram.vision.parts import check_image_parts, param_of

__all__ = ["ChatService", "JSONResult", "StreamResult"]

CHAT_PATH = "/chat/completions"


@dataclass
class JSONResult:
    body: bytes
    status: int = 200


class StreamResult:
    """SSE frames; `aclose` releases the engine connection even if the frames were never read."""

    def __init__(self, frames: AsyncGenerator[bytes, None], resources: AsyncExitStack) -> None:
        self.frames = frames
        self._resources = resources

    async def aclose(self) -> None:
        try:
            await self.frames.aclose()
        finally:
            await self._resources.aclose()


class ChatService:
    def __init__(self, registry: Registry, upstream: UpstreamClient, vision: VisionConfig,
                 fetcher: ImageFetcher) -> None:
        self._registry = registry
        self._upstream = upstream
        self._vision = vision
        self._fetcher = fetcher

    async def create(self, principal: Principal, payload: Any,
                     record: RequestRecord) -> JSONResult | StreamResult:
        request = _validate(payload)
        record.model = request.model
        record.stream = bool(request.stream)
        pool = self._resolve(principal, request.model)
        await self._prepare_images(pool, request, payload, record)

        replica = pool.pick()
        if replica is None:
            raise EngineUnavailable(
                f"No engine for model '{pool.name}' is available right now; try again shortly."
            )
        record.served_model = replica.served_name
        record.upstream = replica.url
        payload["model"] = replica.served_name
        default_max = pool.config.default_max_tokens
        if default_max and request.max_tokens is None and request.max_completion_tokens is None:
            payload["max_tokens"] = default_max
        body = orjson.dumps(payload)
        timeouts = pool.config.timeouts
        deadline = time.monotonic() + timeouts.total

        resources = AsyncExitStack()
        try:
            resources.enter_context(pool.lease(replica))
            first_byte = timeouts.first_byte if request.stream else timeouts.total
            response = await resources.enter_async_context(
                self._upstream.open(replica, CHAT_PATH, body, record.request_id, timeouts,
                                    min(first_byte, timeouts.total))
            )
            if response.status_code >= 300:
                raise await engine_error(response)
            if request.stream:
                frames = _relay_stream(response, pool.name, timeouts, deadline, record)
                return StreamResult(frames, resources)
            raw = await self._upstream.read_body(response, max(deadline - time.monotonic(), 0.001))
        except BaseException:
            await resources.aclose()
            raise
        await resources.aclose()
        record.mark_first_byte()
        return JSONResult(_rewrite_answer(raw, pool.name, record))

    def _resolve(self, principal: Principal, name: str) -> ModelPool:
        pool = self._registry.get(name)
        if pool is None or not principal.may_use(name):
            visible = [p.name for p in self._registry if principal.may_use(p.name)]
            hint = f" Available models: {', '.join(visible)}." if visible else ""
            if name == "qwen-vl" and pool is None:
                hint += (" No vision model is configured: add one with "
                         "`tram up --model qwen-vl=/path/to/vision-checkpoint` or under "
                         "`models:` in tram.yaml.")
            raise ModelNotFound(
                f"The model '{name}' does not exist or you do not have access to it.{hint}",
                param="model",
            )
        return pool

    async def _prepare_images(self, pool: ModelPool, request: ChatCompletionRequest,
                              payload: dict[str, Any], record: RequestRecord) -> None:
        parts = request.image_parts()
        record.images = len(parts)
        if not parts:
            return
        if not pool.config.vision:
            message_index, part_index, _ = parts[0]
            raise ImagesNotSupported(
                f"The model '{pool.name}' is text-only and does not accept images; "
                "send image parts to a vision model such as 'qwen-vl'.",
                param=f"messages[{message_index}].content[{part_index}]",
            )
        check_image_parts(parts, self._vision)
        if pool.config.image_fetch != "gateway":
            return
        for message_index, part_index, part in parts:
            if not part.image_url.url.startswith("data:"):
                data_url = await self._fetcher.fetch_as_data_url(
                    part.image_url.url, param_of(message_index, part_index))
                content = payload["messages"][message_index]["content"]
                content[part_index]["image_url"]["url"] = data_url


def _validate(payload: Any) -> ChatCompletionRequest:
    if not isinstance(payload, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_type")
    try:
        return ChatCompletionRequest.model_validate(payload)
    except ValidationError as exc:
        raise invalid_request_from(exc) from None


def _rewrite_answer(raw: bytes, alias: str, record: RequestRecord) -> bytes:
    try:
        answer = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise EngineBadResponse("The engine's answer is not valid JSON.") from None
    if not isinstance(answer, dict):
        raise EngineBadResponse("The engine's answer is not a JSON object.")
    if "model" in answer:
        answer["model"] = alias
    record.take_usage(answer.get("usage"))
    return orjson.dumps(answer)


class _StreamProgress:
    """What the relay needs to know about the engine's stream to judge how it ended."""

    def __init__(self) -> None:
        self.saw_done = False
        self.choices: set[int] = set()
        self.finished: set[int] = set()

    def complete(self) -> bool:
        # Some engines (transformers serve) end without `data: [DONE]`; a stream whose every
        # choice has a finish_reason is complete all the same.
        return self.saw_done or (bool(self.choices) and self.choices == self.finished)

    def see(self, chunk: dict[str, Any]) -> None:
        for choice in chunk.get("choices") or ():
            if isinstance(choice, dict):
                index = choice.get("index", 0)
                self.choices.add(index)
                if choice.get("finish_reason"):
                    self.finished.add(index)


def _rewrite_chunk(payload: bytes, alias: str, record: RequestRecord,
                   progress: _StreamProgress) -> bytes:
    try:
        chunk = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return payload  # not ours to judge: relayed as the engine sent it
    if isinstance(chunk, dict):
        if "model" in chunk:
            chunk["model"] = alias
        if chunk.get("usage"):
            record.take_usage(chunk["usage"])
        if "error" in chunk:
            record.error_code = "engine_stream_error"
        progress.see(chunk)
        return orjson.dumps(chunk)
    return payload


async def _relay_stream(response: httpx.Response, alias: str, timeouts: Timeouts,
                        deadline: float, record: RequestRecord) -> AsyncGenerator[bytes, None]:
    """Relay SSE events as they arrive, model name rewritten; always end with [DONE]."""
    decoder = SSEDecoder()
    chunks = response.aiter_raw()
    failure: TramError | None = None
    progress = _StreamProgress()
    try:
        while True:
            remaining = deadline - time.monotonic()
            wait = min(timeouts.idle, remaining)
            try:
                with anyio.fail_after(max(wait, 0.001)):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                break
            except TimeoutError:
                if wait >= remaining:
                    failure = EngineTimeout(
                        f"The answer exceeded the total time limit of {timeouts.total:g}s.")
                else:
                    failure = EngineTimeout(
                        f"The engine sent nothing for {timeouts.idle:g}s in the middle of the "
                        "stream.")
                break
            frames = []
            for payload in decoder.feed(chunk):
                if payload == DONE:
                    progress.saw_done = True
                else:
                    frames.append(data_frame(_rewrite_chunk(payload, alias, record, progress)))
            if frames:
                record.mark_first_byte()
                yield b"".join(frames)
        if failure is None and not progress.complete():
            failure = EngineBadResponse("The engine ended the stream before it was complete.")
    except httpx.HTTPError as exc:
        failure = EngineBadResponse(f"The engine's stream broke off ({type(exc).__name__}).")
    if failure is not None:
        record.error_code = failure.code
        yield error_frame(failure)
    yield done_frame()
