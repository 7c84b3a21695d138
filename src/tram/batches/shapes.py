"""What the Batch API writes, exactly as OpenAI writes it: the lines of output and error files
and the Batch object.

An output file line: `{"id": "batch_req_…", "custom_id", "response": {"status_code",
"request_id", "body"}, "error": null}`. A request that was answered with an error (any
non-2xx) goes to the error file in the same shape; a line that never ran (malformed, cancelled,
expired) goes there with `"response": null` and `"error": {"code", "message"}`.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

import orjson

from tram.store.batches import Counts
from tram.store.files import aware
from tram.store.models import Batch

__all__ = ["answer_line", "batch_object", "error_line", "line_id", "unrun_line"]

_TIMES = ("in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at",
          "cancelling_at", "cancelled_at")
_UNRUN = {
    "cancelled": ("batch_cancelled", "This request was not run: the batch was cancelled."),
    "expired": ("batch_expired", "This request could not be executed before the completion "
                                 "window expired."),
}


def line_id() -> str:
    return "batch_req_" + secrets.token_hex(16)


def answer_line(custom_id: str, status: int, request_id: str, body: bytes) -> str:
    """A line whose request was answered (`body`: the answer's JSON, as the client would have
    had it), with no re-parsing of the body."""
    head = orjson.dumps({"id": line_id(), "custom_id": custom_id})[:-1]
    response = orjson.dumps({"status_code": status, "request_id": request_id})[:-1]
    return (head + b',"response":' + response + b',"body":' + body + b'},"error":null}').decode()


def error_line(custom_id: str | None, code: str, message: str) -> str:
    """A line that did not run."""
    return orjson.dumps({"id": line_id(), "custom_id": custom_id, "response": None,
                         "error": {"code": code, "message": message}}).decode()


def unrun_line(custom_id: str | None, state: str) -> str:
    """The error file's line for a line left unrun (`state`: cancelled or expired)."""
    code, message = _UNRUN.get(state, ("batch_request_not_run", "This request was not run."))
    return error_line(custom_id, code, message)


def _stamp(when: dt.datetime | None) -> int | None:
    return int(aware(when).timestamp()) if when is not None else None


def batch_object(batch: Batch, counts: Counts) -> dict[str, Any]:
    """OpenAI's Batch object. A batch's files are written in the transaction that ends it, so
    `finalizing` is never seen; its start is `finalizing_at`."""
    errors = orjson.loads(batch.errors) if batch.errors else None
    usage = None
    if counts.prompt_tokens or counts.completion_tokens:
        usage = {"input_tokens": counts.prompt_tokens,
                 "input_tokens_details": {"cached_tokens": 0},
                 "output_tokens": counts.completion_tokens,
                 "output_tokens_details": {"reasoning_tokens": 0},
                 "total_tokens": counts.prompt_tokens + counts.completion_tokens}
    return {
        "id": batch.id, "object": "batch", "endpoint": batch.endpoint,
        "errors": {"object": "list", "data": errors} if errors else None,
        "input_file_id": batch.input_file_id, "completion_window": batch.completion_window,
        "status": batch.status, "output_file_id": batch.output_file_id,
        "error_file_id": batch.error_file_id, "created_at": _stamp(batch.created_at),
        "expires_at": _stamp(batch.expires_at),
        **{name: _stamp(getattr(batch, name)) for name in _TIMES},
        "request_counts": {"total": batch.total, "completed": counts.completed,
                           "failed": counts.failed},
        "metadata": orjson.loads(batch.batch_metadata) if batch.batch_metadata else None,
        "model": batch.model, "usage": usage,
    }
