"""`GET /v1/models` objects: OpenAI's shape, plus what each alias is served by."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

__all__ = ["Capabilities", "ModelCard", "ModelList"]


class Capabilities(BaseModel):
    """What a model takes and gives besides text (what coding agents' set-ups ask)."""

    tools: bool | None = None  # tool calls parsed into tool_calls
    vision: bool = False  # image parts
    reasoning: bool | None = None  # thinking returned apart (reasoning_content / reasoning)


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "tram"
    # vLLM's field for the underlying model; OpenAI clients ignore what they do not know.
    root: str | None = None
    vision: bool = False
    engine: str | None = None
    description: str | None = None
    # The context one request may use (prompt and answer): vLLM's name, and the plain one.
    max_model_len: int | None = None
    context_window: int | None = None
    max_output_tokens: int | None = None  # at most the context, less the prompt
    capabilities: Capabilities | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
