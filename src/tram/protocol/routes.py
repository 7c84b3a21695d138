"""The requests of every model route beside chat, held to chat's rules.

As for chat, unknown fields pass through untouched (`extra="allow"`) and the gateway forwards
the client's own JSON, not a re-serialisation. What is typed is what the gateway reads and what
engines read the same way everywhere: a field Trạm knows has one type on every route
(`_Known`: "0.5" is never a temperature), the model, whether to stream, token ceilings held
against budgets, the Responses store fields, and the shapes the chat bridges translate
(`relay/bridges/`): Responses' input items and Anthropic's messages and content blocks.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    Tag,
)

__all__ = [
    "AnthropicMessage",
    "CompletionRequest",
    "CountTokensRequest",
    "EmbeddingRequest",
    "MessagesRequest",
    "RerankRequest",
    "ResponsesItem",
    "ResponsesRequest",
    "ScoreRequest",
    "TokenizeRequest",
]

INT32 = 2**31 - 1


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Known(_Open):
    """Fields of OpenAI's and vLLM's sampling that any route may carry, typed as chat types
    them (an int is a number too; a string or a boolean is not)."""

    temperature: StrictFloat | None = Field(None, ge=0, le=2)
    top_p: StrictFloat | None = Field(None, ge=0, le=1)
    top_k: StrictInt | None = Field(None, ge=-1, le=INT32)
    presence_penalty: StrictFloat | None = Field(None, ge=-2, le=2)
    frequency_penalty: StrictFloat | None = Field(None, ge=-2, le=2)
    repetition_penalty: StrictFloat | None = Field(None, gt=0)
    seed: StrictInt | None = None
    n: StrictInt | None = Field(None, ge=1, le=128)
    user: StrictStr | None = None
    stream: StrictBool | None = None


class _Routed(_Known):
    model: StrictStr = Field(min_length=1, max_length=256)


class CompletionRequest(_Routed):
    prompt: StrictStr | list[StrictStr] | list[StrictInt] | list[list[StrictInt]]
    max_tokens: StrictInt | None = Field(None, ge=1, le=INT32)
    stop: StrictStr | list[StrictStr] | None = None
    echo: StrictBool | None = None
    logprobs: StrictInt | None = Field(None, ge=0, le=20)
    suffix: StrictStr | None = None
    best_of: StrictInt | None = Field(None, ge=1, le=128)


class EmbeddingRequest(_Routed):
    input: StrictStr | list[StrictStr] | list[StrictInt] | list[list[StrictInt]]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: StrictInt | None = Field(None, ge=1, le=INT32)


class RerankRequest(_Routed):
    query: StrictStr
    documents: list[StrictStr | dict[StrictStr, Any]] = Field(min_length=1)
    top_n: StrictInt | None = Field(None, ge=1, le=INT32)
    return_documents: StrictBool | None = None


class ScoreRequest(_Routed):
    text_1: StrictStr | list[StrictStr] | None = None
    text_2: StrictStr | list[StrictStr] | None = None


class TokenizeRequest(_Known):
    """vLLM's and llama.cpp's shapes (`prompt`/`messages` or `content`; `tokens` to
    detokenize); the model may be left out when the key sees one model only."""

    model: StrictStr | None = Field(None, min_length=1, max_length=256)
    prompt: StrictStr | None = None
    content: StrictStr | None = None
    tokens: list[StrictInt] | None = None
    add_special_tokens: StrictBool | None = None


# -- Responses ----------------------------------------------------------------------------


class _InputPart(_Open):
    type: StrictStr
    text: StrictStr | None = None
    image_url: StrictStr | None = None
    file_id: StrictStr | None = None
    detail: Literal["auto", "low", "high"] | None = None


class _Message(_Open):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: StrictStr | list[_InputPart]


class _FunctionCall(_Open):
    type: Literal["function_call"]
    call_id: StrictStr
    name: StrictStr
    arguments: StrictStr


class _FunctionOutput(_Open):
    type: Literal["function_call_output"]
    call_id: StrictStr
    output: StrictStr | list[_InputPart]


class _OtherItem(_Open):
    """Reasoning items, item references and the rest: passed on, their type a string."""

    type: StrictStr


def _item_kind(value: Any) -> str:
    """The branch an input item is checked against, by its `type` (a message when it has
    none). Tags are capitalised: `relay/validation.py` leaves them out of an error's param."""
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    if kind is None:
        return "Message"
    return {"message": "Message", "function_call": "FunctionCall",
            "function_call_output": "FunctionOutput"}.get(kind, "OtherItem") \
        if isinstance(kind, str) else "OtherItem"


ResponsesItem = Annotated[
    Annotated[_Message, Tag("Message")] | Annotated[_FunctionCall, Tag("FunctionCall")]
    | Annotated[_FunctionOutput, Tag("FunctionOutput")] | Annotated[_OtherItem, Tag("OtherItem")],
    Discriminator(_item_kind),
]


class _Reasoning(_Open):
    effort: StrictStr | None = None
    summary: StrictStr | None = None


class ResponsesRequest(_Routed):
    input: StrictStr | list[ResponsesItem] | None = None
    instructions: StrictStr | None = None
    store: StrictBool | None = None
    previous_response_id: StrictStr | None = Field(None, min_length=1, max_length=128)
    max_output_tokens: StrictInt | None = Field(None, ge=1, le=INT32)
    tools: list[dict[StrictStr, Any]] | None = None
    tool_choice: StrictStr | dict[StrictStr, Any] | None = None
    parallel_tool_calls: StrictBool | None = None
    reasoning: _Reasoning | None = None
    include: list[StrictStr] | None = None
    metadata: dict[StrictStr, Any] | None = None


# -- Anthropic Messages -----------------------------------------------------------------------


class _Block(_Open):
    """A content block; the known kinds' fields typed (text, tool_use, tool_result, thinking)."""

    type: StrictStr
    text: StrictStr | None = None
    id: StrictStr | None = None
    name: StrictStr | None = None
    input: dict[StrictStr, Any] | None = None
    tool_use_id: StrictStr | None = None
    thinking: StrictStr | None = None
    source: dict[StrictStr, Any] | None = None


class AnthropicMessage(_Open):
    # "system" in the middle of a conversation: what Claude Code sends when its tools change
    # (and vLLM's and llama-server's own Messages routes take).
    role: Literal["user", "assistant", "system"]
    content: StrictStr | list[_Block]


class _Thinking(_Open):
    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: StrictInt | None = Field(None, ge=1, le=INT32)


class MessagesRequest(_Routed):
    """Anthropic's Messages request; `max_tokens` is required there, as here."""

    temperature: StrictFloat | None = Field(None, ge=0, le=1)
    max_tokens: StrictInt = Field(ge=1, le=INT32)
    messages: list[AnthropicMessage] = Field(min_length=1)
    system: StrictStr | list[_Block] | None = None
    tools: list[dict[StrictStr, Any]] | None = None
    tool_choice: dict[StrictStr, Any] | None = None
    stop_sequences: list[StrictStr] | None = None
    thinking: _Thinking | None = None
    metadata: dict[StrictStr, Any] | None = None


class CountTokensRequest(_Routed):
    """Anthropic's messages.count_tokens: a Messages request without what only generation
    needs (Claude Code asks it before long turns)."""

    messages: list[AnthropicMessage] = Field(min_length=1)
    system: StrictStr | list[_Block] | None = None
    tools: list[dict[StrictStr, Any]] | None = None
    thinking: _Thinking | None = None
