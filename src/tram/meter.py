"""What a request costs, counted in one place: the `Meter` every part of the relay reports to
(the engine's usage, what was relayed, whether the engine has the request) and that settles
the figures once the request is over.

Budgets and tpm count the engine's own figures. A stream the client cuts before the engine's
last chunk, a JSON request cancelled or timed out mid-generation, or an engine that sends no
usage at all would otherwise be charged nothing, and a key could spend without limit one cut
stream at a time. So the relay counts what it passes on (one content, reasoning or tool-call
delta is one token: what llama.cpp and vLLM send), vLLM is asked for running usage on every
chunk (`continuous_usage_stats`), and when a request ends without the engine's final usage,
`settle` charges the larger of the engine's running count and the relayed deltas, plus the
engine's prompt count or an estimate from the request, and marks the figures estimated. Routes
whose answers carry no token counts are charged what they did (`charge_answer`): audio by its
duration, tokenize by the tokens it counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["AUDIO_TOKENS_PER_SECOND", "CHARS_PER_TOKEN", "Meter", "audio_estimate",
           "is_generated", "prompt_estimate"]

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


def prompt_estimate(payload: Any) -> int:
    """Tokens of a request's prompt, estimated from its characters and images: chat's
    `messages`, and the other routes' `prompt`, `input`, `instructions` and `system`."""
    if not isinstance(payload, dict):
        return 0
    messages = payload.get("messages")
    chars = count = 0  # the usual chat request's plain-text messages: counted without a walk
    walked: _Count | None = None
    if isinstance(messages, list):
        count = len(messages)
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                chars += len(content)
            elif content is not None:
                walked = walked or _Count()
                walked.walk(content)
    for name in ("prompt", "input", "instructions", "system"):
        value = payload.get(name)
        if value is not None:
            walked = walked or _Count()
            walked.walk(value)
    images = 0
    if walked is not None:
        chars, images = chars + walked.chars, walked.images
    return math.ceil(chars / CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE * count \
        + TOKENS_PER_IMAGE * images


class _Count:
    def __init__(self) -> None:
        self.chars = self.images = 0

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



def _answer_tokens(answer: dict[str, Any]) -> int:
    chars = 0
    for choice in answer.get("choices") or ():
        message = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(message, dict):
            chars += sum(len(text) for name in ("content", "reasoning_content", "reasoning")
                         if isinstance(text := message.get(name), str))
    return -(-chars // CHARS_PER_TOKEN)


@dataclass
class Meter:
    """One request's usage. Everything that learns what a request cost reports it here."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    estimated: bool = False  # the figures are the gateway's, not the engine's final usage
    engine_working: bool = False  # the engine has the request (sent, not refused)
    final: bool = False  # the engine's usage covered the whole answer
    deltas: int = 0  # content, reasoning and tool-call deltas relayed (≈ tokens)

    def engine_usage(self, usage: Any, final: bool = True) -> None:
        """The engine's counts; `final` False for a running count (vLLM's continuous usage
        stats on every chunk), which a later one replaces. OpenAI chat's names
        (prompt/completion), Responses' and Anthropic's (input/output, Anthropic's cache reads
        and writes counted as prompt), or a total alone (rerank, score)."""
        if not isinstance(usage, dict):
            return
        self.final = self.final or final
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if prompt is None and completion is None:
            prompt, completion = usage.get("input_tokens"), usage.get("output_tokens")
            if isinstance(prompt, int):
                read, written = (usage.get("cache_read_input_tokens"),
                                 usage.get("cache_creation_input_tokens"))
                if isinstance(read, int):
                    self.cached_tokens = read
                    prompt += read
                if isinstance(written, int):
                    prompt += written
            elif completion is None and isinstance(usage.get("total_tokens"), int):
                prompt = usage["total_tokens"]
        if isinstance(prompt, int):
            self.prompt_tokens = prompt
        if isinstance(completion, int):
            self.completion_tokens = completion
        details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details")
        if isinstance(details, dict) and isinstance(details.get("cached_tokens"), int):
            self.cached_tokens = details["cached_tokens"]

    def relayed(self, deltas: int = 1) -> None:
        self.deltas += deltas

    def answered(self, answer: dict[str, Any]) -> None:
        """A whole JSON answer: if the engine reported no usage, what it answered counts."""
        if not self.final:
            self.deltas = _answer_tokens(answer)

    def charge_answer(self, route: str, answer: dict[str, Any], payload: Any,
                      upload_size: int = 0) -> None:
        """What an answer without token usage costs: a transcription its audio's duration
        (the engine's `{"type": "duration", "seconds"}`; else guessed from the upload's size)
        and its text, tokenize the tokens it counted, detokenize the tokens it was given."""
        if route == "transcriptions":
            usage = answer.get("usage")
            seconds = usage.get("seconds") if isinstance(usage, dict) else None
            if isinstance(seconds, int | float) and self.prompt_tokens is None:
                self.prompt_tokens = math.ceil(seconds * AUDIO_TOKENS_PER_SECOND)
            elif self.prompt_tokens is None:
                self.prompt_tokens = audio_estimate(upload_size)
                self.estimated = True
            if self.completion_tokens is None:
                text = answer.get("text")
                self.completion_tokens = math.ceil(len(text) / CHARS_PER_TOKEN) \
                    if isinstance(text, str) else 0
        elif route in ("tokenize", "detokenize") and self.prompt_tokens is None:
            tokens = answer.get("tokens") if route == "tokenize" else \
                payload.get("tokens") if isinstance(payload, dict) else None
            count = answer.get("count") if route == "tokenize" else None
            self.prompt_tokens = count if isinstance(count, int) else \
                len(tokens) if isinstance(tokens, list) else 0
            self.completion_tokens = 0
        else:
            return
        self.final = True

    def settle(self, payload: Any) -> None:
        """Once a request is over: if the engine worked on it but its final usage never came,
        charge what was counted and mark the figures estimated."""
        if self.final or not self.engine_working:
            return
        if self.prompt_tokens is None:
            self.prompt_tokens = prompt_estimate(payload)
        self.completion_tokens = max(self.completion_tokens or 0, self.deltas)
        self.estimated = True

    def total(self) -> int:
        return (self.prompt_tokens or 0) + (self.completion_tokens or 0)
