"""What a request is charged when the engine never reports its usage.

Budgets and tpm count the engine's own figures. A stream the client cuts before the engine's
last chunk, a JSON request cancelled or timed out mid-generation, or an engine that sends no
usage at all would otherwise be charged nothing, and a key could spend without limit one cut
stream at a time. So the relay counts what it passes on (one content, reasoning or tool-call
delta is one token: what llama.cpp and vLLM send), vLLM is asked for running usage on every
chunk (`continuous_usage_stats`), and when a request ends without the engine's final usage,
`settle` charges the larger of the engine's running count and the relayed deltas, plus the
engine's prompt count or an estimate from the request, and marks the row `tokens_estimated`.
"""

from __future__ import annotations

import math
from typing import Any

from tram.requestlog import RequestRecord

__all__ = ["AUDIO_TOKENS_PER_SECOND", "CHARS_PER_TOKEN", "audio_estimate", "charge_answer",
           "is_generated", "prompt_estimate", "settle"]

CHARS_PER_TOKEN = 4  # English and code; Vietnamese runs near 3, so this errs on the low side
TOKENS_PER_MESSAGE = 4  # the chat template's role markers around each message
TOKENS_PER_IMAGE = 256  # a small image; large ones cost more, counted by the engine when it can
# Audio is charged by its duration, as tokens: Whisper's encoder makes 1,500 positions of 30 s.
AUDIO_TOKENS_PER_SECOND = 50
# An upload's duration guessed from its size before it is read (128 kbit/s; a WAV at 16 kHz is
# twice that): what is held against limits until the engine says how long the audio was.
AUDIO_BYTES_PER_SECOND = 16_000


def audio_estimate(size: int) -> int:
    return math.ceil(size / AUDIO_BYTES_PER_SECOND * AUDIO_TOKENS_PER_SECOND)


def charge_answer(route: str, answer: dict[str, Any], payload: Any, record: RequestRecord,
                  upload_size: int = 0) -> None:
    """What an answer without token usage costs: a transcription its audio's duration (the
    engine's `{"type": "duration", "seconds"}`; else guessed from the upload's size) and its
    text, tokenize the tokens it counted, detokenize the tokens it was given. Every route
    charges something real, and is limited by it."""
    if route == "transcriptions":
        usage = answer.get("usage")
        seconds = usage.get("seconds") if isinstance(usage, dict) else None
        if isinstance(seconds, int | float) and record.prompt_tokens is None:
            record.prompt_tokens = math.ceil(seconds * AUDIO_TOKENS_PER_SECOND)
        elif record.prompt_tokens is None:
            record.prompt_tokens = audio_estimate(upload_size)
            record.tokens_estimated = True
        if record.completion_tokens is None:
            text = answer.get("text")
            record.completion_tokens = math.ceil(len(text) / CHARS_PER_TOKEN) \
                if isinstance(text, str) else 0
    elif route in ("tokenize", "detokenize") and record.prompt_tokens is None:
        tokens = answer.get("tokens") if route == "tokenize" else \
            payload.get("tokens") if isinstance(payload, dict) else None
        count = answer.get("count") if route == "tokenize" else None
        record.prompt_tokens = count if isinstance(count, int) else \
            len(tokens) if isinstance(tokens, list) else 0
        record.completion_tokens = 0
    else:
        return
    record.usage_final = True


def prompt_estimate(payload: Any) -> int:
    """Tokens of a request's prompt, estimated from its characters and images: chat's
    `messages`, and the other routes' `prompt`, `input`, `instructions` and `system`."""
    if not isinstance(payload, dict):
        return 0
    messages = payload.get("messages")
    count = _Count()
    if isinstance(messages, list):
        count.messages = len(messages)
        for message in messages:
            count.walk(message.get("content") if isinstance(message, dict) else None)
    for name in ("prompt", "input", "instructions", "system"):
        count.walk(payload.get(name))
    return math.ceil(count.chars / CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE * count.messages \
        + TOKENS_PER_IMAGE * count.images


class _Count:
    def __init__(self) -> None:
        self.chars = self.images = self.messages = 0

    def walk(self, value: Any, depth: int = 0) -> None:
        if isinstance(value, str):
            self.chars += len(value)
        elif isinstance(value, list) and depth < 4:
            for item in value:
                self.walk(item, depth + 1)
        elif isinstance(value, dict) and depth < 4:
            kind = value.get("type")
            if kind in ("image_url", "input_image", "image"):
                self.images += 1
                return
            for key in ("text", "content", "input_text", "output"):
                self.walk(value.get(key), depth + 1)


def is_generated(delta: dict[str, Any]) -> bool:
    """A delta that carries generated content, reasoning or a tool call (≈ one token)."""
    return bool(delta.get("content") or delta.get("reasoning_content")
                or delta.get("reasoning") or delta.get("tool_calls"))


def settle(record: RequestRecord, payload: Any) -> None:
    """Once a request is over: if the engine worked on it but its final usage never came,
    charge what was counted and mark the figures estimated."""
    if record.usage_final or not record.engine_working:
        return
    if record.prompt_tokens is None:
        record.prompt_tokens = prompt_estimate(payload)
    record.completion_tokens = max(record.completion_tokens or 0, record.relayed_deltas)
    record.tokens_estimated = True
