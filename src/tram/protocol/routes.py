"""The requests of every route beside chat, checked where the gateway relies on a field.

As for chat, unknown fields pass through untouched (`extra="allow"`) and the gateway forwards
the client's own JSON, not a re-serialisation. What is typed here is what the gateway reads:
the model, whether to stream, token ceilings held against budgets, the Responses store fields,
and the shapes the chat bridges translate (`relay/bridges/`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

__all__ = [
    "CompletionRequest",
    "EmbeddingRequest",
    "MessagesRequest",
    "RerankRequest",
    "ResponsesRequest",
    "ScoreRequest",
    "TokenizeRequest",
]

INT32 = 2**31 - 1


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Routed(_Open):
    model: StrictStr = Field(min_length=1, max_length=256)


class CompletionRequest(_Routed):
    prompt: StrictStr | list[StrictStr] | list[StrictInt] | list[list[StrictInt]]
    stream: StrictBool | None = None
    max_tokens: StrictInt | None = Field(None, ge=1, le=INT32)
    user: StrictStr | None = None


class EmbeddingRequest(_Routed):
    input: StrictStr | list[StrictStr] | list[StrictInt] | list[list[StrictInt]]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: StrictInt | None = Field(None, ge=1, le=INT32)


class RerankRequest(_Routed):
    query: StrictStr
    documents: list[Any] = Field(min_length=1)
    top_n: StrictInt | None = Field(None, ge=1, le=INT32)


class ScoreRequest(_Routed):
    text_1: StrictStr | list[StrictStr] | None = None
    text_2: StrictStr | list[StrictStr] | None = None


class TokenizeRequest(_Open):
    """vLLM's and llama.cpp's shapes (`prompt`/`messages` or `content`; `tokens` to
    detokenize); the model may be left out when the key sees one model only."""

    model: StrictStr | None = Field(None, min_length=1, max_length=256)


class ResponsesRequest(_Routed):
    input: StrictStr | list[dict[str, Any]] | None = None
    instructions: StrictStr | None = None
    stream: StrictBool | None = None
    store: StrictBool | None = None
    previous_response_id: StrictStr | None = Field(None, min_length=1, max_length=128)
    max_output_tokens: StrictInt | None = Field(None, ge=1, le=INT32)
    tools: list[dict[str, Any]] | None = None
    user: StrictStr | None = None


class MessagesRequest(_Routed):
    """Anthropic's Messages request; `max_tokens` is required there, as here."""

    max_tokens: StrictInt = Field(ge=1, le=INT32)
    messages: list[dict[str, Any]] = Field(min_length=1)
    system: StrictStr | list[dict[str, Any]] | None = None
    stream: StrictBool | None = None
    tools: list[dict[str, Any]] | None = None
    stop_sequences: list[StrictStr] | None = None
