"""Every route relayed to engines besides chat, declared once: adding a route is a line here
(and, if its body needs checks, a schema in `protocol/routes.py`).

`events` says what a stream of the route looks like: OpenAI chunks ending in [DONE], the
Responses API's typed events, or Anthropic's; `ceiling` names the fields that bound what a
request may generate (held against the key's budget while it runs); `dialect` is the shape of
the route's errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from tram.protocol.routes import (
    CompletionRequest,
    EmbeddingRequest,
    MessagesRequest,
    RerankRequest,
    ResponsesRequest,
    ScoreRequest,
    TokenizeRequest,
)

__all__ = ["ROUTES", "Route", "route_at"]


@dataclass(frozen=True)
class Route:
    name: str  # usage rows and metrics; `routes:` in tram.yaml
    paths: tuple[str, ...]  # where clients POST it
    engine_path: str  # under the upstream's URL (…/v1), or its root with at_root
    schema: type[BaseModel] | None  # None: a multipart upload
    at_root: bool = False
    events: Literal["none", "chunks", "responses", "anthropic"] = "none"
    ceiling: tuple[str, ...] = ()
    dialect: Literal["openai", "anthropic"] = "openai"
    model_optional: bool = False  # may be left out when the key sees one model


ROUTES: tuple[Route, ...] = (
    Route("completions", ("/v1/completions",), "/completions", CompletionRequest,
          events="chunks", ceiling=("max_tokens",)),
    Route("embeddings", ("/v1/embeddings",), "/embeddings", EmbeddingRequest),
    Route("responses", ("/v1/responses",), "/responses", ResponsesRequest, events="responses",
          ceiling=("max_output_tokens",)),
    Route("messages", ("/v1/messages",), "/messages", MessagesRequest, events="anthropic",
          ceiling=("max_tokens",), dialect="anthropic"),
    Route("rerank", ("/v1/rerank", "/rerank"), "/rerank", RerankRequest),
    Route("score", ("/v1/score", "/score"), "/score", ScoreRequest),
    Route("tokenize", ("/tokenize",), "/tokenize", TokenizeRequest, at_root=True,
          model_optional=True),
    Route("detokenize", ("/detokenize",), "/detokenize", TokenizeRequest, at_root=True,
          model_optional=True),
    Route("transcriptions", ("/v1/audio/transcriptions",), "/audio/transcriptions", None),
)

_BY_PATH = {path: route for route in ROUTES for path in route.paths}


def route_at(path: str) -> Route | None:
    return _BY_PATH.get(path)
