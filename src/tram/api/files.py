"""/v1/files: a key's files (a batch's input as uploaded, the output and error files the
gateway writes). An upload is multipart/form-data (`file`, `purpose: batch`), as the openai
client sends it: refused before its body is read when its declared length is over
`batches.max_file_bytes`, held within the process's upload budget while in memory, parsed off
the event loop. Another key's file is a 404, as one that does not exist."""

from __future__ import annotations

import asyncio
import re

import orjson
from starlette.requests import Request
from starlette.responses import Response

from tram.api.body import ClientGone, content_length, read_body
from tram.api.middleware import header
from tram.api.state import state_of
from tram.auth.principal import Principal
from tram.errors import InvalidRequest, NotFound, RequestTooLarge
from tram.relay.multipart import Form, boundary_of

__all__ = ["delete_file", "file_content", "get_file", "list_files", "upload_file"]

# The form around the file: its field names, headers and boundaries.
_FORM_OVERHEAD = 64 * 1024
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\]")


def _json(data: object) -> Response:
    return Response(orjson.dumps(data), media_type="application/json")


def _principal(request: Request) -> Principal:
    principal: Principal = request.scope["state"]["tram.principal"]
    return principal


def _too_large(limit: int) -> RequestTooLarge:
    return RequestTooLarge(f"The file is larger than the {limit} bytes ({limit / 2**20:g} MiB) "
                           "a file may have here (batches.max_file_bytes).")


def _missing(file_id: str) -> NotFound:
    return NotFound(f"No file with id '{file_id}' found.", param="file_id")


def _filename(given: str) -> str:
    name = _UNSAFE.sub("_", given.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]).strip()
    return name[:255] or "upload.jsonl"


async def _form(request: Request, limit: int) -> Form | None:
    """The upload's form, or None if the client left before sending it."""
    state = state_of(request)
    boundary = boundary_of(header(request.scope, b"content-type"))
    allowed = limit + _FORM_OVERHEAD
    declared = content_length(request.scope)
    if declared is not None and declared > allowed:
        raise _too_large(limit)  # before a byte of the body is read
    async with state.file_uploads.hold(declared or allowed):
        try:
            raw = await read_body(request.scope, request.receive, allowed)
        except RequestTooLarge:
            raise _too_large(limit) from None
        except ClientGone:
            return None
        return await asyncio.to_thread(Form, raw, boundary)


async def upload_file(request: Request) -> Response:
    state = state_of(request)
    limit = state.config.batches.max_file_bytes
    form = await _form(request, limit)
    if form is None:
        return Response(status_code=499)  # nobody is left to read it
    purpose = form.fields.get("purpose")
    if purpose is None:
        raise InvalidRequest("Missing required parameter: 'purpose'.", param="purpose",
                             code="missing_required_parameter")
    if purpose != "batch":
        raise InvalidRequest(f"Invalid value for 'purpose': this gateway keeps files for the "
                             f"Batch API only ('batch'), not '{purpose[:64]}'.", param="purpose")
    sent = form.files.get("file")
    if sent is None:
        raise InvalidRequest("Missing required parameter: 'file' (a file part).", param="file",
                             code="missing_required_parameter")
    filename, content = sent
    if len(content) > limit:
        raise _too_large(limit)
    info = await state.files.create(_principal(request).key_id, _filename(filename), purpose,
                                    content)
    return _json(info.as_json())


def _query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    given = request.query_params.get(name)
    if given is None:
        return default
    if not (given.isascii() and given.isdigit()) or not low <= int(given) <= high:
        raise InvalidRequest(f"Invalid value for '{name}': an integer from {low} to {high}.",
                             param=name)
    return int(given)


async def list_files(request: Request) -> Response:
    params = request.query_params
    order = params.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest("Invalid value for 'order': asc or desc.", param="order")
    limit = _query_int(request, "limit", 10000, 1, 10000)
    found = await state_of(request).files.page(
        _principal(request).key_id, purpose=params.get("purpose"), after=params.get("after"),
        limit=limit + 1, newest_first=order == "desc")
    data = [info.as_json() for info in found[:limit]]
    return _json({"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                  "last_id": data[-1]["id"] if data else None, "has_more": len(found) > limit})


async def get_file(request: Request) -> Response:
    file_id = request.path_params["file_id"]
    info = await state_of(request).files.get(_principal(request).key_id, file_id)
    if info is None:
        raise _missing(file_id)
    return _json(info.as_json())


async def delete_file(request: Request) -> Response:
    file_id = request.path_params["file_id"]
    if not await state_of(request).files.delete(_principal(request).key_id, file_id):
        raise _missing(file_id)
    return _json({"id": file_id, "object": "file", "deleted": True})


async def file_content(request: Request) -> Response:
    file_id = request.path_params["file_id"]
    content = await state_of(request).files.content(_principal(request).key_id, file_id)
    if content is None:
        raise _missing(file_id)
    return Response(content, media_type="application/octet-stream")
