"""The Batch API's rules (`/v1/batches`), behind its HTTP handlers (api/batches.py) and
`tram batches`: a batch is made from a file of the same key, every line checked at once
(lines.py); it is read, listed and cancelled by that key only (any other is told it does not
exist), and listed whole by an administrator."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import orjson

from tram.auth.principal import Principal
from tram.batches.lines import ParsedInput, parse_input
from tram.batches.shapes import batch_object
from tram.config import BatchesConfig
from tram.errors import Conflict, InvalidRequest, NotFound
from tram.protocol.batches import BATCH_ENDPOINTS, BatchCreate
from tram.store.batches import BatchStore
from tram.store.files import FileStore, file_row
from tram.store.models import Batch

__all__ = ["COMPLETION_WINDOW", "BatchService"]

COMPLETION_WINDOW = dt.timedelta(hours=24)  # "24h", the only window OpenAI offers

Hold = Callable[[int], AbstractAsyncContextManager[None]]


@asynccontextmanager
async def _no_hold(size: int) -> AsyncIterator[None]:
    yield


def _missing(batch_id: str) -> NotFound:
    # The same answer for another key's batch as for one that never existed.
    return NotFound(f"No batch with id '{batch_id}' found.", param="batch_id")


class BatchService:
    def __init__(self, files: FileStore, batches: BatchStore, config: BatchesConfig,
                 max_body_bytes: int, wake: Callable[[], None] = lambda: None,
                 hold: Hold | None = None) -> None:
        self._files = files
        self._batches = batches
        self._config = config
        self._max_body = max_body_bytes
        self._wake = wake  # the runner of this process: there is work
        # Memory a file being checked takes, held within the process's budget for files.
        self._hold = hold if hold is not None else _no_hold

    async def create(self, principal: Principal, request: BatchCreate) -> dict[str, Any]:
        owner = principal.key_id
        info = await self._files.get(owner, request.input_file_id)
        if info is None or info.purpose != "batch":
            raise NotFound(f"No file with id '{request.input_file_id}' and purpose 'batch' "
                           "found.", param="input_file_id")
        async with self._hold(info.size):
            batch_id = await self._store(owner, request)
        return await self.get(principal, batch_id)

    async def _store(self, owner: str, request: BatchCreate) -> str:
        """The file checked and stored as a batch; its id."""
        content = await self._files.content(owner, request.input_file_id)
        if content is None:  # deleted in between
            raise NotFound(f"No file with id '{request.input_file_id}' found.",
                           param="input_file_id")
        parsed = await asyncio.to_thread(parse_input, content, request.endpoint,
                                         self._config.max_lines, self._max_body)
        del content
        batch_id = "batch_" + secrets.token_hex(16)
        now = dt.datetime.now(dt.UTC)
        row = {"id": batch_id, "key_id": owner, "endpoint": request.endpoint,
               "route": BATCH_ENDPOINTS[request.endpoint],
               "input_file_id": request.input_file_id,
               "completion_window": request.completion_window, "status": "in_progress",
               "model": parsed.model, "total": len(parsed.lines), "created_at": now,
               "expires_at": now + COMPLETION_WINDOW, "in_progress_at": now,
               "errors": orjson.dumps(parsed.errors).decode() if parsed.errors else None,
               "metadata": orjson.dumps(request.metadata).decode()
               if request.metadata else None}
        error_file = self._failed(row, parsed, now)
        await self._batches.create(row, parsed.lines, error_file)
        if parsed.valid:
            self._wake()
        return batch_id

    @staticmethod
    def _failed(row: dict[str, Any], parsed: ParsedInput,
                now: dt.datetime) -> dict[str, Any] | None:
        """A batch with no line that can run fails at once, its error file written with it."""
        if parsed.valid:
            return None
        errors = [line.result for line in parsed.lines if line.result is not None]
        error_file = file_row(row["key_id"], f"{row['id']}_error.jsonl", "batch_output",
                              ("\n".join(errors) + "\n").encode())
        row.update(status="failed", failed_at=now, in_progress_at=None,
                   error_file_id=error_file["id"])
        return error_file

    async def _object(self, batch: Batch) -> dict[str, Any]:
        counts = await self._batches.counts([batch.id])
        return batch_object(batch, counts[batch.id])

    async def get(self, principal: Principal, batch_id: str) -> dict[str, Any]:
        batch = await self._batches.get(batch_id, principal.key_id)
        if batch is None:
            raise _missing(batch_id)
        return await self._object(batch)

    async def list(self, principal: Principal | None, after: str | None,
                   limit: int) -> dict[str, Any]:
        """The key's batches, newest first (every key's for `principal` None: the admin
        view), one page of `limit`."""
        if not 1 <= limit <= 100:
            raise InvalidRequest("limit must be between 1 and 100.", param="limit")
        owner = principal.key_id if principal is not None else None
        found = await self._batches.page(owner, after, limit + 1)
        page = found[:limit]
        counts = await self._batches.counts(batch.id for batch in page)
        data = [batch_object(batch, counts[batch.id]) | ({"key_id": batch.key_id}
                                                         if principal is None else {})
                for batch in page]
        return {"object": "list", "data": data,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None, "has_more": len(found) > limit}

    async def cancel(self, principal: Principal, batch_id: str) -> dict[str, Any]:
        batch = await self._batches.get(batch_id, principal.key_id)
        if batch is None:
            raise _missing(batch_id)
        if batch.status in ("cancelling", "cancelled"):
            return await self._object(batch)
        if not await self._batches.cancel(batch_id, principal.key_id):
            now = await self._batches.get(batch_id, principal.key_id)
            status = now.status if now is not None else batch.status
            raise Conflict(f"The batch '{batch_id}' is {status}; only a batch in progress "
                           "can be cancelled.", param="batch_id")
        self._wake()  # lines in flight end it once they are done; none: at once
        return await self.get(principal, batch_id)
