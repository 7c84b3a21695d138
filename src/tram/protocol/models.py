"""`GET /v1/models` objects: OpenAI's shape, plus what each alias is served by."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

__all__ = ["ModelCard", "ModelList"]


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


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
