"""GET /openapi.json: an OpenAPI 3.1 document of every route.

Request bodies are the very pydantic models the handlers validate with (`protocol/`), answers
the schemas of `protocol/answers.py`, which the test suite's fuzzer checks every live answer
against; so the document cannot drift from what is served. The table below is the one place a
route is described: a new route is a new `Operation`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import Response

from tram import __version__
from tram.api.state import state_of
from tram.protocol.answers import (
    AnthropicErrorResponse,
    ChatCompletion,
    ChatCompletionChunk,
    ErrorResponse,
    Health,
    KeyCreated,
    KeyInfo,
    KeyList,
    Me,
    ModelStatusList,
    Readiness,
    RelayedAnswer,
    RelayedEvent,
    Reloaded,
    StoredResponseDeleted,
    UsageList,
)
from tram.protocol.chat import ChatCompletionRequest
from tram.protocol.keys import KeyCreate, KeyUpdate
from tram.protocol.models import ModelCard, ModelList
from tram.protocol.routes import (
    CompletionRequest,
    EmbeddingRequest,
    MessagesRequest,
    RerankRequest,
    ResponsesRequest,
    ScoreRequest,
    TokenizeRequest,
)

__all__ = ["OPERATIONS", "Operation", "Param", "openapi_document", "openapi_route"]

Auth = Literal["none", "key", "admin"]


@dataclass(frozen=True)
class Param:
    name: str
    schema: dict[str, Any]
    description: str
    where: Literal["query", "path"] = "query"
    required: bool = False


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    tag: str
    auth: Auth
    answer: type[BaseModel] | None = None  # the JSON body of a success
    status: int = 200
    body: type[BaseModel] | None = None
    stream: type[BaseModel] | None = None  # events of the text/event-stream alternative
    params: tuple[Param, ...] = ()
    errors: tuple[int, ...] = ()
    text: str | None = None  # a plain-text success (the metrics exposition)
    dialect: Literal["openai", "anthropic"] = "openai"  # the shape of its errors
    text_type: str = "text/plain"  # the media type of a `text` success


_RELAYED_ERRORS = (400, 401, 404, 413, 429, 502, 503, 504)
_RESPONSE_ID = Param("response_id", {"type": "string"}, "A stored response's id (resp_…).",
                     "path", True)


def _relayed(path: str, summary: str, body: type[BaseModel], stream: bool = False,
             dialect: Literal["openai", "anthropic"] = "openai") -> Operation:
    return Operation("post", path, summary, "openai" if dialect == "openai" else "anthropic",
                     "key", RelayedAnswer, body=body, stream=RelayedEvent if stream else None,
                     errors=_RELAYED_ERRORS, dialect=dialect)


_KEY_ID = Param("key_id", {"type": "string"}, "A key's id (key_…).", "path", True)
_ADMIN_ERRORS = (401, 403)

OPERATIONS: tuple[Operation, ...] = (
    Operation("get", "/health", "The process is alive", "operations", "none", Health),
    Operation("get", "/", "The web pages: playground and admin console (HTML)", "operations",
              "none", text="The page; its assets are under /ui/", text_type="text/html"),
    Operation("get", "/ready", "Every model has a reachable engine (503 if not)", "operations",
              "none", Readiness),
    Operation("get", "/v1/models", "Models this key may use", "openai", "key", ModelList,
              errors=(401,)),
    Operation("get", "/v1/models/{model}", "One model", "openai", "key", ModelCard,
              params=(Param("model", {"type": "string"}, "The model alias.", "path", True),),
              errors=(401, 404)),
    Operation("post", "/v1/chat/completions", "Chat completion (JSON, or SSE with stream: true)",
              "openai", "key", ChatCompletion, body=ChatCompletionRequest,
              stream=ChatCompletionChunk,
              errors=(400, 401, 404, 413, 429, 502, 503, 504)),
    _relayed("/v1/completions", "Text completion (JSON, or SSE with stream: true)",
             CompletionRequest, stream=True),
    _relayed("/v1/embeddings", "Embeddings (models whose engine serves them)", EmbeddingRequest),
    _relayed("/v1/responses", "OpenAI Responses (stored with store; previous_response_id "
             "continues a stored conversation)", ResponsesRequest, stream=True),
    Operation("get", "/v1/responses/{response_id}", "A stored response (its key's only)",
              "openai", "key", RelayedAnswer, params=(_RESPONSE_ID,), errors=(401, 404)),
    Operation("delete", "/v1/responses/{response_id}", "Delete a stored response", "openai",
              "key", StoredResponseDeleted, params=(_RESPONSE_ID,), errors=(401, 404)),
    _relayed("/v1/messages", "Anthropic Messages (x-api-key or Bearer; Anthropic's errors)",
             MessagesRequest, stream=True, dialect="anthropic"),
    _relayed("/v1/rerank", "Rerank documents (models whose engine serves it)", RerankRequest),
    _relayed("/rerank", "Rerank documents (vLLM's path)", RerankRequest),
    _relayed("/v1/score", "Score text pairs (models whose engine serves it)", ScoreRequest),
    _relayed("/tokenize", "Tokenize with the model's tokenizer", TokenizeRequest),
    _relayed("/detokenize", "Tokens back to text", TokenizeRequest),
    Operation("get", "/v1/me", "The key making the request: its name, rights, models, limits and "
              "its own usage by day (what the web pages show)", "openai", "key", Me,
              errors=(401,)),
    Operation("get", "/admin/models", "Every model's replicas live: health, circuit state, "
              "requests in flight", "admin", "admin", ModelStatusList, errors=_ADMIN_ERRORS),
    Operation("get", "/metrics", "Prometheus metrics", "admin", "admin",
              text="Prometheus text exposition format", errors=_ADMIN_ERRORS),
    Operation("post", "/admin/keys", "Create a virtual key (the key is in this answer only)",
              "admin", "admin", KeyCreated, status=201, body=KeyCreate,
              errors=(400, *_ADMIN_ERRORS)),
    Operation("get", "/admin/keys", "List virtual keys", "admin", "admin", KeyList,
              errors=_ADMIN_ERRORS),
    Operation("get", "/admin/keys/{key_id}", "One key's record", "admin", "admin", KeyInfo,
              params=(_KEY_ID,), errors=(*_ADMIN_ERRORS, 404)),
    Operation("patch", "/admin/keys/{key_id}", "Change a key (null removes a limit)", "admin",
              "admin", KeyInfo, body=KeyUpdate, params=(_KEY_ID,),
              errors=(400, *_ADMIN_ERRORS, 404)),
    Operation("delete", "/admin/keys/{key_id}", "Revoke a key (at once, everywhere)", "admin",
              "admin", KeyInfo, params=(_KEY_ID,), errors=(*_ADMIN_ERRORS, 404)),
    Operation("get", "/admin/usage", "Requests and tokens by key, model or day", "admin",
              "admin", UsageList, errors=(400, *_ADMIN_ERRORS), params=(
                  Param("by", {"enum": ["key", "model", "day", "route"], "default": "key"},
                        "How rows are grouped."),
                  Param("days", {"type": "number"}, "Only the last N days."),
                  Param("key", {"type": "string"}, "Only this key id."),
                  Param("model", {"type": "string"}, "Only this model alias."))),
    Operation("post", "/admin/reload", "Re-read tram.yaml (in-flight requests untouched)",
              "admin", "admin", Reloaded, errors=(400, *_ADMIN_ERRORS)),
)

_DESCRIPTIONS = {200: "OK", 201: "Created", 400: "Invalid request", 401: "Missing or invalid key",
                 403: "The key may not do this", 404: "Not found", 413: "Body too large",
                 429: "A limit or budget of the key, or the model's in-flight limit",
                 502: "The engine failed", 503: "Unavailable (no engine, or store down)",
                 504: "The engine timed out"}


def _schemas(operations: Iterable[Operation]) -> tuple[dict[Any, Any], dict[str, Any]]:
    wanted: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [
        (ErrorResponse, "serialization"), (AnthropicErrorResponse, "serialization")]
    for op in operations:
        if op.body is not None:
            wanted.append((op.body, "validation"))
        for model in (op.answer, op.stream):
            if model is not None:
                wanted.append((model, "serialization"))
    refs, definitions = models_json_schema(list(dict.fromkeys(wanted)),
                                           ref_template="#/components/schemas/{model}")
    return refs, definitions.get("$defs", {})


def _operation(op: Operation, refs: dict[Any, Any]) -> dict[str, Any]:
    error_model = AnthropicErrorResponse if op.dialect == "anthropic" else ErrorResponse
    error = {"content": {"application/json": {"schema": refs[(error_model, "serialization")]}}}
    success: dict[str, Any] = {"description": _DESCRIPTIONS.get(op.status, "OK"), "content": {}}
    if op.answer is not None:
        success["content"]["application/json"] = {"schema": refs[(op.answer, "serialization")]}
    if op.stream is not None:
        # One server-sent event (as OpenAPI 3.2's itemSchema, which 3.1 tools read from
        # `schema`): a chunk, an error event if the stream fails midway, then [DONE].
        success["content"]["text/event-stream"] = {"schema": {
            "type": "object", "required": ["data"],
            "properties": {"event": {"type": "string"}, "id": {"type": "string"}, "data": {
                "anyOf": [{"const": "[DONE]"}, {
                    "type": "string", "contentMediaType": "application/json",
                    "contentSchema": {"anyOf": [refs[(op.stream, "serialization")],
                                                refs[(error_model, "serialization")]]}}]}}}}
    if op.text is not None:
        success["content"][op.text_type] = {"schema": {"type": "string",
                                                       "description": op.text}}
    responses: dict[str, Any] = {str(op.status): success}
    for status in op.errors:
        responses[str(status)] = {"description": _DESCRIPTIONS[status], **error}
    if op.answer is Readiness:  # /ready's 503 carries the readiness body, not an error
        responses["503"] = {"description": "Not ready", "content": success["content"]}
    responses["default"] = {"description": "Any other error, in the same shape", **error}
    spec: dict[str, Any] = {"summary": op.summary, "tags": [op.tag],
                            "operationId": f"{op.method}_{op.path}".replace("/", "_")
                            .replace("{", "").replace("}", "").replace(".", "_").strip("_"),
                            "responses": responses}
    if op.auth != "none":
        spec["security"] = [{"bearer": []}]
    if op.auth == "admin":
        spec["description"] = "The master key or an admin key."
    if op.params:
        spec["parameters"] = [{"name": p.name, "in": p.where, "required": p.required,
                               "description": p.description, "schema": p.schema}
                              for p in op.params]
    if op.body is not None:
        spec["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": refs[(op.body, "validation")]}}}
    return spec


def openapi_document(model_names: list[str]) -> dict[str, Any]:
    """The document, with this deployment's model aliases as examples of `model`."""
    refs, schemas = _schemas(OPERATIONS)
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op, refs)
    chat = schemas.get("ChatCompletionRequest", {}).get("properties", {}).get("model")
    if chat is not None and model_names:
        chat["examples"] = model_names
    _accepted_parts_only(schemas)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Trạm", "version": __version__,
                 "description": "A self-hosted, OpenAI-compatible LLM API. Errors are "
                                "`{\"error\": {\"message\", \"type\", \"param\", \"code\"}}`."},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer",
                       "description": "`Authorization: Bearer <key>`: the master key "
                                      "(TRAM_MASTER_KEY or LITELLM_MASTER_KEY) or a virtual key"}}},
    }


def _accepted_parts_only(schemas: dict[str, Any]) -> None:
    """Content parts of other types are parsed only to be refused by name (400
    unsupported_content_part): the document lists the parts that are accepted."""
    other = {"$ref": "#/components/schemas/OtherPart"}
    content = schemas.get("ChatMessage", {}).get("properties", {}).get("content", {})
    for branch in content.get("anyOf", ()):
        one_of = branch.get("items", {}).get("oneOf")
        if one_of is not None and other in one_of:
            one_of.remove(other)
            schemas.pop("OtherPart", None)


async def openapi_route(request: Request) -> Response:
    state = state_of(request)
    return Response(orjson.dumps(openapi_document([pool.name for pool in state.registry])),
                    media_type="application/json")
