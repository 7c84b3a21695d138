"""GET /openapi.json: an OpenAPI 3.1 document of every route.

Request bodies are the very pydantic models the handlers validate with (`protocol/`), answers
the schemas of `protocol/answers.py`, which the test suite's fuzzer checks every live answer
against; so the document cannot drift from what is served. It is made from the route table
(`api/table.py`), the one place a route is described.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from tram import __version__
from tram.api.endpoint import Endpoint, Param
from tram.protocol.answers import AnthropicErrorResponse, ErrorResponse, Readiness
from tram.relay.route import ModelRoute

__all__ = ["Operation", "openapi_document", "operations"]


@dataclass(frozen=True)
class Operation:
    """One operation of the document, from an entry of the route table."""

    method: str
    path: str
    summary: str
    tag: str
    auth: Literal["none", "key", "admin"]
    answer: type[BaseModel] | None = None  # the JSON body of a success
    status: int = 200
    body: type[BaseModel] | None = None
    stream: type[BaseModel] | None = None  # events of the text/event-stream alternative
    params: tuple[Param, ...] = ()
    errors: tuple[int, ...] = ()
    text: str | None = None  # a plain-text success (the metrics exposition)
    dialect: Literal["openai", "anthropic"] = "openai"  # the shape of its errors
    text_type: str = "text/plain"  # the media type of a `text` success
    form: tuple[Param, ...] = ()  # a multipart/form-data upload (a file and its fields)


def operations(endpoints: Iterable[Endpoint],
               routes: Iterable[ModelRoute]) -> tuple[Operation, ...]:
    """The route table as operations: every endpoint, and every path of every model route."""
    ops = [Operation(e.method.lower(), e.path.replace(":path}", "}"), e.summary, e.tag, e.auth,
                     e.answer, e.status, e.body, None, e.params, e.errors, e.text,
                     text_type=e.text_type, form=e.form) for e in endpoints]
    for route in routes:
        tag = "anthropic" if route.dialect == "anthropic" else "openai"
        ops += [Operation("post", path, route.summary, tag, "key", route.answer,
                          body=route.schema, stream=route.stream_event, errors=route.errors,
                          dialect=route.dialect,
                          form=_UPLOAD_FORM if route.schema is None else ())
                for path in route.paths]
    return tuple(ops)


# A model route's upload (transcriptions): the file and the model.
_UPLOAD_FORM = (
    Param("file", {"type": "string", "contentMediaType": "application/octet-stream"},
          "The file.", "form", True),
    Param("model", {"type": "string"}, "The model alias.", "form", True))

_DESCRIPTIONS = {200: "OK", 201: "Created", 400: "Invalid request", 401: "Missing or invalid key",
                 403: "The key may not do this", 404: "Not found", 409: "Conflicts with the "
                 "object's state", 413: "Body too large",
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
    elif op.form:
        spec["requestBody"] = {"required": True, "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": [p.name for p in op.form if p.required],
            "properties": {p.name: {**p.schema, "description": p.description}
                           for p in op.form}}}}}
    return spec


def openapi_document(model_names: list[str], endpoints: Iterable[Endpoint],
                     routes: Iterable[ModelRoute]) -> dict[str, Any]:
    """The document of the route table, with this deployment's model aliases as examples of
    `model`."""
    ops = operations(endpoints, routes)
    refs, schemas = _schemas(ops)
    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
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
