"""A route served by a plain handler, as the route table (`api/table.py`) declares it and the
OpenAPI document (`api/openapi.py`) describes it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

__all__ = ["Auth", "Endpoint", "Handler", "Param"]

Auth = Literal["none", "key", "admin"]
Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Param:
    name: str
    schema: dict[str, object]
    description: str
    where: Literal["query", "path", "form"] = "query"  # form: a multipart/form-data field
    required: bool = False


@dataclass(frozen=True)
class Endpoint:
    """A route served by a plain handler, with what its OpenAPI operation says."""

    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    auth: Auth
    answer: type[BaseModel] | None = None  # the JSON body of a success
    status: int = 200
    body: type[BaseModel] | None = None
    params: tuple[Param, ...] = ()
    errors: tuple[int, ...] = ()
    text: str | None = None  # a plain-text success (the metrics exposition)
    text_type: str = "text/plain"
    form: tuple[Param, ...] = ()  # a multipart/form-data upload's fields
