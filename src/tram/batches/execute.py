"""One batch line run as the request it is: through `ModelService.create`, the one path of
every model request (validation, the key's model scope, media vetting, thinking, the in-flight
limit, forward or bridge), as the key that made the batch (read again for each line: a revoked
key fails its lines), admitted against that key's limits by the same limiter as its other
requests, journaled and recorded as one usage row of its route, and logged. Its request is
marked `traffic = "batch"` (RequestRecord): what the relay reads to give it batch priority.

The outcome is the line's output or error file line, or `Retry`: the line was refused for a
passing reason (the key's rpm, tpm or concurrency; the model overloaded or without an engine;
the store or the shared limits down) and goes back to wait. A key out of budget is not
passing: the line fails with the quota error, and so will the key's next lines — unless
the key's other lines running here hold what is missing (admission holds each request's
estimate while it runs): then it waits for them to end.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from tram.auth.principal import Principal
from tram.batches.shapes import answer_line
from tram.errors import (
    InsufficientQuota,
    InvalidRequest,
    RateLimited,
    TramError,
    error_body,
    unexpected_error,
)
from tram.metrics import Metrics
from tram.relay.admission import Admission
from tram.relay.forward import StreamResult
from tram.relay.route import ModelRoute
from tram.relay.service import ModelService
from tram.requestlog import RequestRecord, log_request
from tram.store.batch_lines import ClaimedLine, Outcome
from tram.store.usage import UsageWriter

__all__ = ["LineExecutor", "Retry", "passing"]

logger = logging.getLogger("tram.batches")


@dataclass(frozen=True)
class Retry:
    after: float  # seconds
    why: str


def passing(error: TramError) -> bool:
    """Refused for now, not for good: worth trying the line again later."""
    status = error.status_code()
    return status == 503 or error.code == "engine_unreachable" \
        or (status == 429 and error.code != "insufficient_quota")


class LineExecutor:
    def __init__(self, models: ModelService, routes: Mapping[str, ModelRoute],
                 admission: Admission, usage: UsageWriter, metrics: Metrics | None,
                 principals: Callable[[str], Awaitable[Principal]], retry_seconds: float) -> None:
        self._models = models
        self._routes = routes
        self._admission = admission
        self._usage = usage
        self._metrics = metrics
        self._principals = principals
        self._retry = retry_seconds

    def _later(self, error: TramError) -> Retry:
        after = float(error.retry_after) if isinstance(error, RateLimited) else self._retry
        return Retry(max(after, self._retry), error.code or "refused")

    async def run(self, line: ClaimedLine, owner: str, siblings: int = 0) -> Outcome | Retry:
        """`siblings`: the owner's other lines in flight here, which hold part of its budget
        until they end (a budget refusal then waits for them rather than failing the line)."""
        route = self._routes[line.route]
        record = RequestRecord(os.urandom(16).hex(), "POST", route.path)
        record.route, record.traffic, record.batch_id = route.name, "batch", line.batch_id
        try:
            principal = await self._principals(owner)
        except TramError as error:
            return self._later(error) if passing(error) else _failed(line, record, error)
        record.key_id = principal.key_id
        payload: Any = orjson.loads(line.body)
        try:
            ticket = await self._admission.admit(route, principal, payload)
        except TramError as error:
            if passing(error):
                return self._later(error)  # nothing was asked of anyone: no usage row
            if siblings and isinstance(error, InsufficientQuota):
                return Retry(min(self._retry, 1.0), "budget held by the batch's lines")
            self._usage.begin(record, payload)
            return self._done(line, record, error)
        self._usage.begin(record, payload)
        try:
            outcome = await self._create(line, route, principal, payload, record)
        except BaseException:
            record.status, record.error_code = 499, "batch_interrupted"  # shutting down
            self._record(record)
            raise
        finally:
            self._admission.settle(record, payload)
            if ticket is not None:
                await self._admission.release(record, ticket)
        return self._done(line, record, outcome)

    async def _create(self, line: ClaimedLine, route: ModelRoute, principal: Principal,
                      payload: Any, record: RequestRecord) -> tuple[int, bytes] | TramError:
        try:
            result = await self._models.create(route, principal, payload, record)
        except TramError as error:
            return error
        except Exception:
            logger.exception("batch %s line %d failed unexpectedly (request %s)",
                             line.batch_id, line.line, record.request_id)
            return unexpected_error()
        if isinstance(result, StreamResult):  # lines are checked not to stream; never here
            await result.aclose()
            return InvalidRequest("Batch requests are not streamed.", param="stream")
        return result.status, result.body

    def _done(self, line: ClaimedLine, record: RequestRecord,
              answer: tuple[int, bytes] | TramError) -> Outcome | Retry:
        """The usage row and access line of a request that ran (or was refused for good)."""
        if isinstance(answer, TramError):
            record.status, record.error_code = answer.status_code(), answer.code
            self._record(record)
            if passing(answer):
                return self._later(answer)
            return _failed(line, record, answer)
        record.status = answer[0]
        self._record(record)
        state = "succeeded" if 200 <= answer[0] < 300 else "failed"
        return Outcome(state, answer_line(line.custom_id, answer[0], record.request_id,
                                          answer[1]),
                       record.prompt_tokens, record.completion_tokens)

    def _record(self, record: RequestRecord) -> None:
        self._usage.record(record.as_usage())
        log_request(record)
        if self._metrics is not None and record.model is not None:
            self._metrics.observe_request(
                record.model, record.status or 0, record.elapsed(),
                record.first_byte_ms / 1000 if record.first_byte_ms is not None else None,
                record.prompt_tokens, record.completion_tokens, record.route or "chat")


def _failed(line: ClaimedLine, record: RequestRecord, error: TramError) -> Outcome:
    """An error answer, in the error file as the client would have had it."""
    return Outcome("failed", answer_line(line.custom_id, error.status_code(), record.request_id,
                                         error_body(error)),
                   record.prompt_tokens, record.completion_tokens)
