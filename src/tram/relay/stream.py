"""Relaying the engine's answer: JSON rewritten once, SSE chunk by chunk as it arrives."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from tram.config import Timeouts
from tram.errors import EngineBadResponse, EngineTimeout, TramError
from tram.meter import is_generated
from tram.relay.sse import DONE, SSEDecoder, data_frame, done_frame, error_frame
from tram.requestlog import RequestRecord
from tram.transport.deadlines import Ticker, Watch
from tram.transport.upstream import UpstreamResponse

__all__ = [
    "ChunkStream",
    "StreamHandler",
    "UsageAsked",
    "choices_answer",
    "engine_answer",
    "mirror_reasoning",
    "relay_stream",
]


def engine_answer(raw: bytes, alias: str, record: RequestRecord) -> dict[str, Any]:
    """An engine's JSON answer (any route) as an object, with the alias as its model and its
    usage taken into the record; a 502 if it is not a JSON object."""
    try:
        answer = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise EngineBadResponse("The engine's answer is not valid JSON.") from None
    if not isinstance(answer, dict):
        raise EngineBadResponse("The engine's answer is not a JSON object.")
    if "model" in answer:
        answer["model"] = alias
    record.meter.engine_usage(answer.get("usage"))
    return answer


def choices_answer(raw: bytes, alias: str, record: RequestRecord) -> dict[str, Any]:
    """A chat (or completions) answer with the alias as its model and reasoning under both
    names; its usage taken into the record."""
    answer = engine_answer(raw, alias, record)
    for choice in answer.get("choices") or ():
        if isinstance(choice, dict) and isinstance(message := choice.get("message"), dict):
            mirror_reasoning(message)
    record.meter.answered(answer)  # an engine that reports no usage: what it answered counts
    return answer


def mirror_reasoning(part: dict[str, Any]) -> None:
    """A message or delta carries the reasoning under both names: vLLM renamed
    `reasoning_content` to `reasoning` and dropped the old name, which Open WebUI and many
    clients still read; older engines send only the old one."""
    if "reasoning" in part:
        if "reasoning_content" not in part:
            part["reasoning_content"] = part["reasoning"]
    elif "reasoning_content" in part:
        part["reasoning"] = part["reasoning_content"]


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

    def see(self, choices: Any) -> int:
        """Track each choice's end, give reasoning both its names; the deltas that carried
        generated text (≈ tokens, for accounting). One pass: this runs on every chunk."""
        deltas = 0
        for choice in choices or ():
            if isinstance(choice, dict):
                index = choice.get("index", 0)
                self.choices.add(index)
                if choice.get("finish_reason"):
                    self.finished.add(index)
                delta = choice.get("delta")
                if delta and isinstance(delta, dict):
                    if "reasoning" in delta or "reasoning_content" in delta:
                        mirror_reasoning(delta)
                    if is_generated(delta):
                        deltas += 1
                elif choice.get("text"):  # /v1/completions
                    deltas += 1
        return deltas


@dataclass(frozen=True)
class UsageAsked:
    """What usage the client itself asked for; the rest, asked by the gateway for accounting,
    is taken out of the chunks before they are relayed."""

    final: bool = True  # stream_options.include_usage: the last, usage-only chunk
    running: bool = True  # stream_options.continuous_usage_stats: usage on every chunk


def _rewrite_chunk(payload: bytes, alias: str, record: RequestRecord,
                   progress: _StreamProgress, asked: UsageAsked) -> bytes | None:
    """The chunk with the alias as its model; None for a usage chunk the client did not ask for."""
    try:
        chunk = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return payload  # not ours to judge: relayed as the engine sent it
    if isinstance(chunk, dict):
        if "model" in chunk:
            chunk["model"] = alias
        choices = chunk.get("choices")
        if chunk.get("usage"):
            record.meter.engine_usage(chunk["usage"], final=not choices)
            if not choices and not asked.final:
                return None
            if choices and not asked.running:
                del chunk["usage"]
        if "error" in chunk:
            record.error_code = "engine_stream_error"
        record.meter.deltas += progress.see(choices)  # every chunk: no call for a sum
        return orjson.dumps(chunk)
    return payload


class StreamHandler(Protocol):
    """What one route does with each event of the engine's stream (see `ChunkStream` for
    chat and completions, `relay/events.py` for typed events and the bridges)."""

    def event(self, payload: bytes) -> bytes | None:
        """The frame(s) to relay for one event's data, or None to drop it."""

    def done(self) -> None:
        """The engine sent `data: [DONE]`."""

    def complete(self) -> bool:
        """Whether the engine's stream ended as a whole answer."""

    def end(self) -> bytes:
        """The frames that close a stream that went well."""

    def failed(self, error: TramError) -> bytes:
        """The frames that close a stream that failed midway."""

    # True when `store_pending` has work to do before the frames of this batch go out (storing an
    # answer before the client can refer to it); checked, not awaited, on every batch.
    pending: bool

    async def store_pending(self) -> None: ...


class ChunkStream:
    """OpenAI chunks (chat, completions): model rewritten, usage captured (and kept from the
    client if it did not ask), reasoning mirrored; ends with `data: [DONE]`."""

    __slots__ = ("_alias", "_asked", "_progress", "_record")
    pending = False

    def __init__(self, alias: str, record: RequestRecord, asked: UsageAsked = UsageAsked()) -> None:
        self._alias = alias
        self._record = record
        self._asked = asked
        self._progress = _StreamProgress()

    def event(self, payload: bytes) -> bytes | None:
        rewritten = _rewrite_chunk(payload, self._alias, self._record, self._progress, self._asked)
        return None if rewritten is None else data_frame(rewritten)

    def done(self) -> None:
        self._progress.saw_done = True

    def complete(self) -> bool:
        return self._progress.complete()

    def end(self) -> bytes:
        return done_frame()

    def failed(self, error: TramError) -> bytes:
        return error_frame(error) + done_frame()

    async def store_pending(self) -> None:
        return None


def _timed_out(timeouts: Timeouts, total: bool) -> EngineTimeout:
    if total:
        return EngineTimeout(f"The answer exceeded the total time limit of {timeouts.total:g}s.")
    return EngineTimeout(f"The engine sent nothing for {timeouts.idle:g}s in the middle of the "
                         "stream.")


async def relay_stream(response: UpstreamResponse, handler: StreamHandler, timeouts: Timeouts,
                       deadline: float, record: RequestRecord,
                       on_engine_failure: Callable[[], None],
                       deadlines: Ticker) -> AsyncGenerator[bytes, None]:
    """Relay SSE events as they arrive, each through the route's handler; always end with the
    route's closing frames (for OpenAI chunks, an error event if it failed, then [DONE]).

    A stream the engine breaks off or lets go silent counts against the replica's health.
    """
    decoder = SSEDecoder()
    read = response.reader()
    watch = Watch(deadlines)
    failure: TramError | None = None
    try:
        while True:
            now = time.monotonic()  # the event loop's clock too (Ticker's docstring)
            remaining = deadline - now
            wait = min(timeouts.idle, remaining)
            watch.arm(now + max(wait, 0.001))
            try:
                chunk = await read()
            except asyncio.CancelledError:
                if not watch.timed_out():
                    raise
                failure = _timed_out(timeouts, total=wait >= remaining)
                break
            finally:
                watch.disarm()
            if not chunk:
                break
            frames = []
            for payload in decoder.feed(chunk):
                if payload == DONE:
                    handler.done()
                elif (frame := handler.event(payload)) is not None:
                    frames.append(frame)
            if frames:
                if handler.pending:
                    await handler.store_pending()
                record.mark_first_byte()
                yield b"".join(frames)
        if failure is None and not handler.complete():
            failure = EngineBadResponse("The engine ended the stream before it was complete.")
        elif failure is None and handler.pending:
            await handler.store_pending()
    except OSError as exc:
        failure = EngineBadResponse(f"The engine's stream broke off ({type(exc).__name__}).")
    except TramError as error:  # the gateway's own part failed (storing the answer)
        record.error_code = error.code
        yield handler.failed(error)
        return
    if failure is not None:
        record.error_code = failure.code
        on_engine_failure()
        yield handler.failed(failure)
        return
    yield handler.end()
