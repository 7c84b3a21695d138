"""A batch's input file read into lines, each checked as OpenAI checks a batch request: a JSON
object with a `custom_id` (a string, unique in the file), `method` POST, `url` the batch's
endpoint and a `body` object (not streamed). A line that fails is not refused with the whole
file: it becomes an error file line (and an entry of the batch's `errors`), and the others run.
What the body itself holds is checked when the line runs, as for any request (its error is the
answer in the error file). Blank lines are skipped; line numbers count every line."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from tram.batches.shapes import error_line
from tram.errors import InvalidRequest, TramError
from tram.protocol.jsontext import parse_json
from tram.store.batches import NewLine

__all__ = ["MAX_REPORTED_ERRORS", "ParsedInput", "parse_input"]

# Entries of a batch's `errors.data` (every malformed line is in the error file regardless).
MAX_REPORTED_ERRORS = 100


@dataclass
class ParsedInput:
    lines: list[NewLine] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)  # BatchError objects
    valid: int = 0
    models: set[str] = field(default_factory=set)

    @property
    def model(self) -> str | None:
        """The model every runnable line names, if they name one."""
        return next(iter(self.models)) if len(self.models) == 1 else None


class _Malformed(Exception):
    def __init__(self, code: str, message: str, param: str | None = None,
                 custom_id: str | None = None) -> None:
        self.code, self.message, self.param, self.custom_id = code, message, param, custom_id


def _check(raw: bytes, endpoint: str, seen: set[str], max_body: int) -> tuple[str, Any]:
    """The line's custom_id and body, or _Malformed."""
    try:
        item = parse_json(raw)
    except TramError as error:
        raise _Malformed("invalid_json_line", error.message.replace(
            "The request body", "This line", 1)) from None
    if not isinstance(item, dict):
        raise _Malformed("invalid_json_line", "This line is not a JSON object.")
    custom_id = item.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        raise _Malformed("missing_custom_id", "Each request needs a custom_id (a non-empty "
                         "string).", "custom_id")
    if custom_id in seen:
        raise _Malformed("duplicate_custom_id", f"The custom_id '{custom_id}' is used by an "
                         "earlier line; each must be unique.", "custom_id", custom_id)
    seen.add(custom_id)
    if item.get("method") != "POST":
        raise _Malformed("invalid_method", "The method must be POST.", "method", custom_id)
    if item.get("url") != endpoint:
        raise _Malformed("invalid_url", f"The url must be the batch's endpoint, {endpoint}.",
                         "url", custom_id)
    body = item.get("body")
    if not isinstance(body, dict):
        raise _Malformed("invalid_body", "The body must be a JSON object (the request).",
                         "body", custom_id)
    if body.get("stream") not in (None, False):
        raise _Malformed("invalid_body", "Batch requests are not streamed; leave out stream.",
                         "body.stream", custom_id)
    if len(raw) > max_body:
        raise _Malformed("request_too_large", f"This request is larger than the {max_body} "
                         "bytes a request may have (server.max_body_bytes).", "body", custom_id)
    return custom_id, body


def _raw_lines(content: bytes, max_lines: int) -> list[tuple[int, bytes]]:
    numbered = [(number, raw) for number, raw in enumerate(content.split(b"\n"), 1)
                if raw.strip()]
    if not numbered:
        raise InvalidRequest("The input file holds no requests (it must be JSONL: one request "
                             "a line).", param="input_file_id", code="invalid_input_file")
    if len(numbered) > max_lines:
        raise InvalidRequest(f"The input file holds {len(numbered)} requests; a batch may hold "
                             f"{max_lines} (batches.max_lines).", param="input_file_id",
                             code="too_many_requests")
    return numbered


def parse_input(content: bytes, endpoint: str, max_lines: int, max_body: int) -> ParsedInput:
    """Every request of the file; a 400 when there is none, or more than `max_lines`. CPU
    work on up to the whole file: run it off the event loop."""
    parsed = ParsedInput()
    seen: set[str] = set()
    for number, raw in _raw_lines(content, max_lines):
        try:
            custom_id, body = _check(raw, endpoint, seen, max_body)
        except _Malformed as bad:
            message = f"Line {number}: {bad.message}"
            if len(parsed.errors) < MAX_REPORTED_ERRORS:
                parsed.errors.append({"code": bad.code, "message": message,
                                      "param": bad.param, "line": number})
            parsed.lines.append(NewLine(number, bad.custom_id, "", None,
                                        error_line(bad.custom_id, bad.code, message)))
            continue
        model = body.get("model")
        model = model[:200] if isinstance(model, str) else ""
        parsed.models.add(model)
        parsed.valid += 1
        parsed.lines.append(NewLine(number, custom_id, model, orjson.dumps(body).decode()))
    return parsed
