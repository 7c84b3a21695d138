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

__all__ = ["CHARS_PER_TOKEN", "is_generated", "prompt_estimate", "settle"]

CHARS_PER_TOKEN = 4  # English and code; Vietnamese runs near 3, so this errs on the low side
TOKENS_PER_MESSAGE = 4  # the chat template's role markers around each message
TOKENS_PER_IMAGE = 256  # a small image; large ones cost more, counted by the engine when it can


def prompt_estimate(payload: Any) -> int:
    """Tokens of a chat request's prompt, estimated from its characters and images."""
    messages = payload.get("messages") if isinstance(payload, dict) else None
    if not isinstance(messages, list):
        return 0
    chars = images = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            for part in content:
                if not isinstance(part, dict):
                    continue
                text = part.get("text")
                if isinstance(text, str):
                    chars += len(text)
                elif part.get("type") != "text":
                    images += 1
    return math.ceil(chars / CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE * len(messages) \
        + TOKENS_PER_IMAGE * images


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
