"""What the gateway answers, as schemas for the OpenAPI document (`api/openapi.py`).

Engine answers are relayed, not rebuilt, so these describe what Trạm guarantees (OpenAI's
fields, the alias as `model`) and allow whatever else an engine adds. The fuzzer in the tests
checks every live answer against them, so they cannot drift from what is served.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

__all__ = [
    "AnthropicErrorResponse",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ErrorDetail",
    "ErrorResponse",
    "Health",
    "KeyCreated",
    "KeyInfo",
    "KeyList",
    "Me",
    "ModelStatus",
    "ModelStatusList",
    "OpenAPIDocument",
    "Readiness",
    "RelayedAnswer",
    "RelayedEvent",
    "Reloaded",
    "ReplicaStatus",
    "ResponseItemList",
    "StoredResponseDeleted",
    "Usage",
    "UsageList",
    "UsageRow",
]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    """Every error, with a truthful status code (OpenAI's shape)."""

    error: ErrorDetail


class AnthropicErrorDetail(BaseModel):
    type: str
    message: str


class AnthropicErrorResponse(BaseModel):
    """Every error on /v1/messages, in Anthropic's shape (same statuses)."""

    type: Literal["error"]
    error: AnthropicErrorDetail


class RelayedAnswer(_Open):
    """An engine's answer on a relayed route (embeddings, rerank, responses, messages, …):
    relayed as the engine wrote it, with the alias as `model` where it names one."""


class RelayedEvent(_Open):
    """One event of a relayed stream: OpenAI chunks, or the Responses API's and Anthropic's
    typed events (their `type` is also the SSE event name)."""


class Me(BaseModel):
    """GET /v1/me: the key making the request (never the key itself), its models and limits,
    and its own usage of the last 30 days by day."""

    object: Literal["me"]
    key_id: str
    name: str
    owner: str | None
    is_master: bool
    is_admin: bool
    models: list[str]
    limits: dict[str, Any] | None
    usage_by_day: list[UsageRow]


class ReplicaStatus(BaseModel):
    url: str
    served_name: str
    healthy: bool
    available: bool
    circuit: Literal["healthy", "open", "half_open", "down"]
    in_flight: int
    weight: int


class ModelStatus(BaseModel):
    id: str
    vision: bool
    description: str | None
    in_flight: int
    policy: str
    replicas: list[ReplicaStatus]
    routes_off: list[str]
    routes_lacking: list[str]


class ModelStatusList(BaseModel):
    object: Literal["list"]
    data: list[ModelStatus]


class StoredResponseDeleted(BaseModel):
    id: str
    object: Literal["response.deleted"]
    deleted: bool


class Usage(_Open):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(_Open):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str  # the alias the client sent
    choices: list[dict[str, Any]]
    usage: Usage | None = None


class ChatCompletionChunk(_Open):
    """One `data:` event of a stream; the stream ends with `data: [DONE]` (after an error
    event `{"error": {...}}` when it failed midway)."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[dict[str, Any]]
    usage: Usage | None = None


class KeyInfo(BaseModel):
    """A virtual key's record; the key itself is never shown again after its creation."""

    id: str
    object: Literal["key"]
    name: str
    owner: str | None
    key_hint: str
    models: list[str] | None
    expires_at: str | None
    revoked_at: str | None
    created_at: str
    status: Literal["active", "revoked", "expired"]
    admin: bool
    rpm: int | None
    tpm: int | None
    max_concurrency: int | None
    max_total_tokens: int | None
    budget_tokens: int | None
    budget_period: Literal["day", "week", "month"] | None
    priority: Literal["interactive", "batch"] | int | None = None
    weight: float | None = None


class KeyCreated(KeyInfo):
    key: str  # shown once: only its SHA-256 digest is stored


class KeyList(BaseModel):
    object: Literal["list"]
    data: list[KeyInfo]


class UsageRow(BaseModel):
    """One group (`key`, `model`, `day` or `route`, as asked) of recorded requests; by key,
    with the key's name and owner."""

    model_config = ConfigDict(extra="allow")  # the group's own field: key, model, day, route

    name: str | None = None
    owner: str | None = None

    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    errors: int
    estimated_requests: int  # tokens counted by the gateway: the engine never reported them
    error_rate: float


class UsageList(BaseModel):
    object: Literal["list"]
    by: Literal["key", "model", "day", "route"]
    data: list[UsageRow]


class OpenAPIDocument(_Open):
    """This gateway's OpenAPI document (3.1)."""

    openapi: str
    info: dict[str, Any]
    paths: dict[str, Any]


class ResponseItemList(BaseModel):
    """A page of a stored response's input items."""

    object: Literal["list"]
    data: list[dict[str, Any]]
    has_more: bool
    first_id: str | None
    last_id: str | None


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    models: dict[str, Literal["ready", "unreachable"]]


class Reloaded(BaseModel):
    status: Literal["reloaded"]
    models: list[str]
