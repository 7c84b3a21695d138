"""What a model route is, to the relay: one `ModelRoute` per route, declared in the route table
(`api/table.py`, with its paths), from which the gateway derives its dispatch, the key check,
the shape of its errors, its bridge to chat, the usage it records and its OpenAPI operation.

Every model route takes the same path through `relay/service.py`; what differs is said here:
how its body is read and checked, where its media parts are, whether a chat template applies
(thinking), which fields bound what it generates, what its stream looks like, and whether a
bridge to chat completions exists when an engine lacks it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

__all__ = ["Body", "Dialect", "Events", "MediaShape", "ModelRoute"]

Events = Literal["none", "chunks", "responses", "anthropic"]
Dialect = Literal["openai", "anthropic"]
# Where a route's media parts are: chat's messages (image_url, video/audio parts), Responses'
# input items (input_image, input_file…), Anthropic's content blocks (image, document).
MediaShape = Literal["chat", "responses", "messages"]
Body = Literal["json", "json-lifted", "multipart"]

# What an engine answers for a route it does not serve: vLLM and most servers 404 (or 405 when
# the path exists for GET only), llama.cpp 501 for a route its model or flags do not enable.
# Chat counts a 501 only: its 404 means an unknown model name.
LACKS = frozenset({404, 405, 501})


@dataclass(frozen=True)
class ModelRoute:
    name: str  # usage rows, metrics, `routes:` in tram.yaml
    paths: tuple[str, ...]  # where clients POST it (the first is its name in messages)
    engine_path: str  # under the upstream's URL (…/v1), or its root with at_root
    schema: type[BaseModel] | None  # what the body is checked against; None: multipart
    summary: str  # the OpenAPI operation's summary
    answer: type[BaseModel]  # the JSON success, as documented
    stream_event: type[BaseModel] | None = None  # one event of its stream, as documented
    body: Body = "json"  # json-lifted: large image data URLs cut out before parsing (chat)
    at_root: bool = False
    events: Events = "none"
    ceiling: tuple[str, ...] = ()  # fields that bound what it generates, held against budgets
    dialect: Dialect = "openai"
    model_optional: bool = False  # may be left out when the key sees one model
    media: MediaShape | None = None  # vetted before any engine sees it
    templated: bool = False  # a chat template applies: the model's thinking default holds
    prioritized: bool = False  # the engine's body takes a scheduling `priority` (vLLM's)
    bridge: Literal["responses", "messages"] | None = None  # served over chat when lacking
    lacks_on: frozenset[int] = LACKS
    errors: tuple[int, ...] = (400, 401, 404, 413, 429, 502, 503, 504)

    @property
    def path(self) -> str:
        return self.paths[0]
