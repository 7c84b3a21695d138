"""The route table: every route the gateway serves, in one place, and the only module that
names a path. From it come the dispatch (`app.py`), which routes need a key and which accept
Anthropic's `x-api-key` (`api/middleware.py`), the shape of each route's errors, the model
routes' behaviour (`relay/route.py`: schema, media, thinking, bridge, usage fields) and the
OpenAPI document (`api/openapi.py`).

Adding a model route is one `ModelRoute` below plus its request schema (`protocol/routes.py`);
adding another route, one `Endpoint` and its handler.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from tram.api.admin import metrics, reload
from tram.api.batches import admin_batches, cancel_batch, create_batch, get_batch, list_batches
from tram.api.endpoint import Endpoint, Param
from tram.api.files import delete_file, file_content, get_file, list_files, upload_file
from tram.api.health import health, ready
from tram.api.key_admin import create_key, list_keys, revoke_key, show_key, update_key, usage_view
from tram.api.models import get_model, list_models
from tram.api.openapi import openapi_document
from tram.api.pages import me, models_status
from tram.api.sharing import sharing_status
from tram.api.state import state_of
from tram.api.stored import cancel_response, delete_response, get_response, response_input_items
from tram.auth.principal import bearer_token
from tram.errors import TramError
from tram.protocol.answers import (
    ChatCompletion,
    ChatCompletionChunk,
    Health,
    KeyCreated,
    KeyInfo,
    KeyList,
    Me,
    ModelStatusList,
    OpenAPIDocument,
    Readiness,
    RelayedAnswer,
    RelayedEvent,
    Reloaded,
    ResponseItemList,
    StoredResponseDeleted,
    UsageList,
)
from tram.protocol.batches import (
    BatchCreate,
    BatchList,
    BatchObject,
    FileDeleted,
    FileList,
    FileObject,
)
from tram.protocol.chat import ChatCompletionRequest
from tram.protocol.keys import KeyCreate, KeyUpdate
from tram.protocol.models import ModelCard, ModelList
from tram.protocol.routes import (
    CompletionRequest,
    CountTokensRequest,
    EmbeddingRequest,
    MessagesRequest,
    RerankRequest,
    ResponsesRequest,
    ScoreRequest,
    TokenizeRequest,
)
from tram.protocol.sharing import SharingStatus
from tram.relay.route import LACKS, Dialect, ModelRoute
from tram.web import web_index

__all__ = ["ENDPOINTS", "MODEL_ROUTES", "PAGE", "PAGE_ASSETS", "dialect_of", "key_prefixes",
           "takes_x_api_key"]

# The web pages: the page itself, its assets under one prefix (never a catch-all that would
# turn an API route's 405 into a 404).
PAGE = "/"
PAGE_ASSETS = "/ui"


_ADMIN_ERRORS = (401, 403)
_KEY_ID = Param("key_id", {"type": "string"}, "A key's id (key_…).", "path", True)
_RESPONSE_ID = Param("response_id", {"type": "string"}, "A stored response's id (resp_…).",
                     "path", True)
_FILE_ID = Param("file_id", {"type": "string"}, "A file's id (file-…).", "path", True)
_BATCH_ID = Param("batch_id", {"type": "string"}, "A batch's id (batch_…).", "path", True)
_PAGE = (Param("after", {"type": "string"}, "The last id of the previous page."),
         Param("limit", {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
               "How many."))
_FILES_PARAMS = (
    Param("purpose", {"type": "string"}, "Only files of this purpose."),
    Param("after", {"type": "string"}, "The last id of the previous page."),
    Param("limit", {"type": "integer", "minimum": 1, "maximum": 10000, "default": 10000},
          "How many."),
    Param("order", {"enum": ["asc", "desc"], "default": "desc"}, "By creation time."))
_UPLOAD = (Param("file", {"type": "string", "contentMediaType": "application/octet-stream"},
                 "The file: JSONL, one batch request a line.", "form", True),
           Param("purpose", {"enum": ["batch"]}, "What the file is for.", "form", True))
_USAGE_PARAMS = (
    Param("by", {"enum": ["key", "model", "day", "route"], "default": "key"},
          "How rows are grouped."),
    Param("days", {"type": "number"}, "Only the last N days."),
    Param("key", {"type": "string"}, "Only this key id."),
    Param("model", {"type": "string"}, "Only this model alias."))


async def _openapi(request: Request) -> Response:
    """The document is public; this deployment's model aliases are in it only for a caller
    with a valid key (they say what the gateway serves, which is nobody else's business)."""
    state = state_of(request)
    try:
        await state.authenticator.authenticate(bearer_token(request.headers.get("authorization")))
        names = [pool.name for pool in state.registry]
    except TramError:
        names = []
    return Response(orjson.dumps(openapi_document(names, ENDPOINTS, MODEL_ROUTES)),
                    media_type="application/json")


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("GET", "/health", health, "The process is alive", "operations", "none", Health),
    Endpoint("GET", PAGE, web_index, "The web pages: playground and admin console "
             "(HTML)", "operations", "none", text="The page; its assets are under /ui/",
             text_type="text/html"),
    Endpoint("GET", "/ready", ready, "Every model has a reachable engine (503 if not)",
             "operations", "none", Readiness),
    Endpoint("GET", "/v1/models", list_models, "Models this key may use", "openai", "key",
             ModelList, errors=(401,)),
    Endpoint("GET", "/v1/models/{model:path}", get_model, "One model", "openai", "key",
             ModelCard, params=(Param("model", {"type": "string"}, "The model alias.", "path",
                                      True),), errors=(401, 404)),
    Endpoint("GET", "/v1/responses/{response_id}", get_response, "A stored response (its key's "
             "only)", "openai", "key", RelayedAnswer, params=(_RESPONSE_ID,), errors=(401, 404)),
    Endpoint("DELETE", "/v1/responses/{response_id}", delete_response, "Delete a stored "
             "response", "openai", "key", StoredResponseDeleted, params=(_RESPONSE_ID,),
             errors=(401, 404)),
    Endpoint("GET", "/v1/responses/{response_id}/input_items", response_input_items,
             "The input items of a stored response", "openai", "key", ResponseItemList,
             params=(_RESPONSE_ID, Param("limit", {"type": "integer", "minimum": 1,
                                                   "maximum": 100}, "Items per page."),
                     Param("order", {"enum": ["asc", "desc"]}, "Oldest or newest first."),
                     Param("after", {"type": "string"}, "The item id to list after.")),
             errors=(400, 401, 404)),
    Endpoint("POST", "/v1/responses/{response_id}/cancel", cancel_response, "Cancel a "
             "background response (every response here is answered in the foreground: 400)",
             "openai", "key", RelayedAnswer, params=(_RESPONSE_ID,), errors=(400, 401, 404)),
    Endpoint("POST", "/v1/files", upload_file, "Upload a file for the Batch API "
             "(multipart/form-data: file, purpose batch; at most batches.max_file_bytes)",
             "openai", "key", FileObject, form=_UPLOAD, errors=(400, 401, 413, 503)),
    Endpoint("GET", "/v1/files", list_files, "This key's files", "openai", "key", FileList,
             params=_FILES_PARAMS, errors=(400, 401)),
    Endpoint("GET", "/v1/files/{file_id}", get_file, "One file (its key's only)", "openai",
             "key", FileObject, params=(_FILE_ID,), errors=(401, 404)),
    Endpoint("DELETE", "/v1/files/{file_id}", delete_file, "Delete a file", "openai", "key",
             FileDeleted, params=(_FILE_ID,), errors=(401, 404)),
    Endpoint("GET", "/v1/files/{file_id}/content", file_content, "A file's bytes", "openai",
             "key", text="The file as uploaded or written (JSONL)",
             text_type="application/octet-stream", params=(_FILE_ID,), errors=(401, 404)),
    Endpoint("POST", "/v1/batches", create_batch, "Run a file of requests as a batch, on "
             "capacity interactive requests leave idle", "openai", "key", BatchObject,
             body=BatchCreate, errors=(400, 401, 404, 503)),
    Endpoint("GET", "/v1/batches", list_batches, "This key's batches, newest first", "openai",
             "key", BatchList, params=_PAGE, errors=(400, 401)),
    Endpoint("GET", "/v1/batches/{batch_id}", get_batch, "One batch and its progress",
             "openai", "key", BatchObject, params=(_BATCH_ID,), errors=(401, 404)),
    Endpoint("POST", "/v1/batches/{batch_id}/cancel", cancel_batch, "Cancel a batch (lines "
             "in flight finish)", "openai", "key", BatchObject, params=(_BATCH_ID,),
             errors=(401, 404, 409)),
    Endpoint("GET", "/admin/batches", admin_batches, "Every key's batches, newest first",
             "admin", "admin", BatchList, params=_PAGE, errors=(400, *_ADMIN_ERRORS)),
    Endpoint("GET", "/v1/me", me, "The key making the request: its name, rights, models, "
             "limits and its own usage by day (what the web pages show)", "openai", "key", Me,
             errors=(401,)),
    Endpoint("GET", "/admin/models", models_status, "Every model's replicas live: health, "
             "circuit state, requests in flight", "admin", "admin", ModelStatusList,
             errors=_ADMIN_ERRORS),
    Endpoint("GET", "/admin/sharing", sharing_status, "Every model's fair queue live: "
             "capacity, requests started and waiting by class, each contending key's class, "
             "weight and share; and tram.yaml's sharing settings", "admin", "admin",
             SharingStatus, errors=_ADMIN_ERRORS),
    Endpoint("GET", "/metrics", metrics, "Prometheus metrics", "admin", "admin",
             text="Prometheus text exposition format", errors=_ADMIN_ERRORS),
    Endpoint("POST", "/admin/keys", create_key, "Create a virtual key (the key is in this "
             "answer only)", "admin", "admin", KeyCreated, status=201, body=KeyCreate,
             errors=(400, *_ADMIN_ERRORS)),
    Endpoint("GET", "/admin/keys", list_keys, "List virtual keys", "admin", "admin", KeyList,
             errors=_ADMIN_ERRORS),
    Endpoint("GET", "/admin/keys/{key_id}", show_key, "One key's record", "admin", "admin",
             KeyInfo, params=(_KEY_ID,), errors=(*_ADMIN_ERRORS, 404)),
    Endpoint("PATCH", "/admin/keys/{key_id}", update_key, "Change a key (null removes a limit)",
             "admin", "admin", KeyInfo, body=KeyUpdate, params=(_KEY_ID,),
             errors=(400, *_ADMIN_ERRORS, 404)),
    Endpoint("DELETE", "/admin/keys/{key_id}", revoke_key, "Revoke a key (at once, everywhere)",
             "admin", "admin", KeyInfo, params=(_KEY_ID,), errors=(*_ADMIN_ERRORS, 404)),
    Endpoint("GET", "/admin/usage", usage_view, "Requests and tokens by key, model or day",
             "admin", "admin", UsageList, errors=(400, *_ADMIN_ERRORS), params=_USAGE_PARAMS),
    Endpoint("GET", "/openapi.json", _openapi, "This document (OpenAPI 3.1)", "operations",
             "none", OpenAPIDocument),
    Endpoint("POST", "/admin/reload", reload, "Re-read tram.yaml (in-flight requests "
             "untouched)", "admin", "admin", Reloaded, errors=(400, *_ADMIN_ERRORS)),
)

MODEL_ROUTES: tuple[ModelRoute, ...] = (
    ModelRoute("chat", ("/v1/chat/completions",), "/chat/completions", ChatCompletionRequest,
               "Chat completion (JSON, or SSE with stream: true)", ChatCompletion,
               ChatCompletionChunk, body="json-lifted", events="chunks",
               ceiling=("max_tokens", "max_completion_tokens"), media="chat", templated=True,
               prioritized=True, lacks_on=frozenset({501})),
    ModelRoute("completions", ("/v1/completions",), "/completions", CompletionRequest,
               "Text completion (JSON, or SSE with stream: true)", RelayedAnswer, RelayedEvent,
               events="chunks", ceiling=("max_tokens",), prioritized=True),
    ModelRoute("embeddings", ("/v1/embeddings",), "/embeddings", EmbeddingRequest,
               "Embeddings (models whose engine serves them)", RelayedAnswer, prioritized=True),
    ModelRoute("responses", ("/v1/responses",), "/responses", ResponsesRequest,
               "OpenAI Responses (stored with store; previous_response_id continues a stored "
               "conversation)", RelayedAnswer, RelayedEvent, events="responses",
               ceiling=("max_output_tokens",), media="responses", templated=True,
               prioritized=True, bridge="responses"),
    ModelRoute("messages", ("/v1/messages",), "/messages", MessagesRequest,
               "Anthropic Messages (x-api-key or Bearer; Anthropic's errors)", RelayedAnswer,
               RelayedEvent, events="anthropic", ceiling=("max_tokens",), dialect="anthropic",
               media="messages", templated=True, bridge="messages"),
    ModelRoute("count_tokens", ("/v1/messages/count_tokens",), "/messages/count_tokens",
               CountTokensRequest, "Count a Messages request's tokens (the engine's tokenizer; "
               "charged as a prompt)", RelayedAnswer, dialect="anthropic", media="messages"),
    ModelRoute("rerank", ("/v1/rerank", "/rerank"), "/rerank", RerankRequest,
               "Rerank documents (models whose engine serves it)", RelayedAnswer,
               prioritized=True),
    ModelRoute("score", ("/v1/score", "/score"), "/score", ScoreRequest,
               "Score text pairs (models whose engine serves it)", RelayedAnswer,
               prioritized=True),
    ModelRoute("tokenize", ("/tokenize",), "/tokenize", TokenizeRequest,
               "Tokenize with the model's tokenizer", RelayedAnswer, at_root=True,
               model_optional=True),
    ModelRoute("detokenize", ("/detokenize",), "/detokenize", TokenizeRequest,
               "Tokens back to text", RelayedAnswer, at_root=True, model_optional=True),
    ModelRoute("transcriptions", ("/v1/audio/transcriptions",), "/audio/transcriptions", None,
               "Transcribe an audio file (multipart/form-data: file, model)", RelayedAnswer,
               body="multipart", lacks_on=LACKS),
)


def _first_segment(path: str) -> str:
    return "/" + path.strip("/").split("/", 1)[0] if path != "/" else "/"


def key_prefixes() -> tuple[str, ...]:
    """The path prefixes behind which every request needs a key: the first segment of every
    route that needs one (so an unknown path there is a 401 without a key, not a 404)."""
    paths = [e.path for e in ENDPOINTS if e.auth != "none"]
    paths += [path for route in MODEL_ROUTES for path in route.paths]
    return tuple(sorted({_first_segment(path) for path in paths}))


def dialect_of(path: str) -> Dialect:
    """The shape a route's errors take (Anthropic's on its Messages route, else OpenAI's)."""
    for route in MODEL_ROUTES:
        if path in route.paths:
            return route.dialect
    return "openai"


def takes_x_api_key(path: str) -> bool:
    """Anthropic's clients send the key as `x-api-key`; it is taken on the client API (every
    route a plain key may use), never on the admin API or the metrics."""
    return not path.startswith(tuple(_first_segment(e.path) for e in ENDPOINTS
                                     if e.auth == "admin"))
