"""Sending one request to a model's engines: pick a replica, forward, retry another before the
first byte, and hand back a value (`JSONResult` or `StreamResult`).

Every route goes through here (chat, completions, embeddings, responses, messages, rerank, …);
what differs per route is described by a `Call`: the engine path, the body for a replica's
served name, what to do with a JSON answer, and the handler of each stream event.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field

from tram.auth.principal import Principal
from tram.config import Timeouts
from tram.errors import (
    EngineConnectTimeout,
    EngineTimeout,
    EngineUnavailable,
    EngineUnreachable,
    ModelNotFound,
    ModelOverloaded,
    RouteNotServed,
    TramError,
)
from tram.metrics import Metrics
from tram.relay.stream import StreamHandler, relay_stream
from tram.requestlog import RequestRecord
from tram.routing.policies import RoutingHints
from tram.routing.registry import ModelPool, Registry, Replica
from tram.transport.upstream import UpstreamClient, UpstreamResponse, engine_error

__all__ = ["CHAT_NOT_SERVED", "NOT_SERVED", "Call", "EngineLacksRoute", "Forwarder",
           "JSONResult", "StreamResult", "not_served", "resolve_pool"]

# What an engine answers for a route it does not serve: vLLM and most servers 404 (or 405 when
# the path exists for GET only), llama.cpp 501 for a route its model or flags do not enable
# (chat on an embedding model). Chat counts a 501 only: its 404 means an unknown model name.
NOT_SERVED = frozenset({404, 405, 501})
CHAT_NOT_SERVED = frozenset({501})


@dataclass
class JSONResult:
    body: bytes
    status: int = 200
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)  # besides content-type


class _Held:
    """What one attempt holds until its answer is read: the request counted in flight for the
    model and on the replica, and the engine's response (its connection). Plain code, not an
    AsyncExitStack of context managers, which cost a measurable share of a request's CPU
    (docs/decisions.md)."""

    __slots__ = ("_pool", "_replica", "response")

    def __init__(self, pool: ModelPool, replica: Replica) -> None:
        pool.hold(replica)
        self._pool: ModelPool | None = pool
        self._replica = replica
        self.response: UpstreamResponse | None = None

    def release(self) -> None:
        """Once: close the response (back to the pool if read to its end) and uncount."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            if self.response is not None:
                self.response.close()
        finally:
            pool.release(self._replica)


class StreamResult:
    """SSE frames; `aclose` releases the engine connection even if the frames were never read."""

    def __init__(self, frames: AsyncGenerator[bytes, None], held: _Held) -> None:
        self.frames = frames
        self._held = held
        self.headers: list[tuple[bytes, bytes]] = []  # besides the event stream's own
        self.on_close: Callable[[], None] | None = None  # after the engine hold is released

    async def aclose(self) -> None:
        try:
            await self.frames.aclose()
        finally:
            try:
                self._held.release()
            finally:
                after, self.on_close = self.on_close, None
                if after is not None:
                    after()


class EngineLacksRoute(Exception):
    """The engine answered that it does not serve this path (a 404, 405 or 501; for chat a
    501): the caller bridges to chat or says so in the route's own shape, never a 502."""

    def __init__(self, replica: Replica, error: TramError) -> None:
        self.replica = replica
        self.error = error


@dataclass
class Call:
    """One request to forward, as the route describes it."""

    path: str  # at the engine, under the upstream's URL (…/v1), or at its root
    body: Callable[[str], bytes]  # the body for a replica's served model name
    stream: bool
    answer: Callable[[bytes], bytes]  # a JSON answer → what the client gets
    handler: Callable[[], StreamHandler]  # one per stream: what each event becomes
    at_root: bool = False
    content_type: str = "application/json"
    hints: RoutingHints = field(default_factory=RoutingHints)
    # Engine statuses that mean "this route is not served here": EngineLacksRoute, not an error.
    lacks_on: frozenset[int] = CHAT_NOT_SERVED


class _Retryable(Exception):
    """A failure of one replica before anything reached the client: another may serve."""

    def __init__(self, error: TramError) -> None:
        self.error = error


class Forwarder:
    def __init__(self, upstream: UpstreamClient, metrics: Metrics | None = None) -> None:
        self._upstream = upstream
        self._metrics = metrics

    def count_rejection(self, model: str, reason: str) -> None:
        if self._metrics is not None:
            self._metrics.rejected.labels(model, reason).inc()

    def check_in_flight(self, pool: ModelPool) -> None:
        limit = pool.config.max_in_flight
        if limit is not None and pool.in_flight >= limit:
            self.count_rejection(pool.name, "max_in_flight")
            raise ModelOverloaded(f"The model '{pool.name}' has {limit} requests in flight, its "
                                  "limit; retry shortly.")

    async def run(self, pool: ModelPool, call: Call,
                  record: RequestRecord) -> JSONResult | StreamResult:
        """Forward to a replica the policy picks, retrying another on a
        failure before the first byte, as the model's `retries` allow."""
        deadline = time.monotonic() + pool.config.timeouts.total
        tried: list[Replica] = []
        last: _Retryable | None = None
        while True:
            replica = pool.pick(call.hints, exclude=tried)
            if replica is None:
                if last is not None:
                    raise last.error
                self.count_rejection(pool.name, "no_healthy_replica")
                raise EngineUnavailable(f"No engine for model '{pool.name}' is available right "
                                        "now; try again shortly.")
            tried.append(replica)
            try:
                return await self._forward(pool, replica, call, record, deadline)
            except _Retryable as failure:
                last = failure
                if len(tried) > pool.config.retries:
                    raise failure.error from None
                if self._metrics is not None:
                    self._metrics.retries.labels(pool.name).inc()

    async def _forward(self, pool: ModelPool, replica: Replica, call: Call,
                       record: RequestRecord, deadline: float) -> JSONResult | StreamResult:
        """One attempt on one replica. Raises _Retryable when another replica may serve."""
        record.served_model = replica.served_name
        record.upstream = replica.url
        body = call.body(replica.served_name)
        timeouts = pool.config.timeouts
        health = replica.health
        held = _Held(pool, replica)
        try:
            wait, message = _first_byte_wait(call.stream, timeouts, deadline)
            record.meter.engine_working = True  # from here, a cancelled request has cost the engine
            try:
                response = await self._upstream.send(
                    replica, call.path, body, record.request_id, timeouts, wait, message,
                    at_root=call.at_root, content_type=call.content_type)
            except (EngineUnreachable, EngineConnectTimeout) as exc:
                record.meter.engine_working = False
                if health is not None:
                    health.record_failure()
                raise _Retryable(exc) from None
            except EngineTimeout:
                if health is not None:
                    health.record_failure()
                raise
            held.response = response
            if response.status_code >= 300:
                record.meter.engine_working = False  # refused: nothing generated to charge
                raise await _refusal(call, replica, response)
            if health is not None:
                health.record_success()
            if call.stream:
                on_failure = health.record_failure if health is not None else _nothing
                frames = relay_stream(response, call.handler(), timeouts, deadline, record,
                                      on_failure, self._upstream.deadlines)
                return StreamResult(frames, held)
            raw = await self._upstream.read_body(response, max(deadline - time.monotonic(), 0.001))
        except BaseException:
            held.release()
            raise
        held.release()
        record.mark_first_byte()
        return JSONResult(call.answer(raw))


async def _refusal(call: Call, replica: Replica, response: UpstreamResponse) -> Exception:
    """What a non-2xx answer of the engine becomes: the error to raise."""
    health = replica.health
    error = await engine_error(response)
    status = response.status_code
    if status in call.lacks_on:
        if health is not None:
            health.record_success()  # it answered: the replica is fine
        return EngineLacksRoute(replica, error)
    if status >= 500:
        if health is not None:
            health.record_failure()
        if status in (502, 503):
            return _Retryable(error)
    elif health is not None:
        health.record_success()  # a 4xx is the request's fault, not the replica's
    return error


def _first_byte_wait(stream: bool, timeouts: Timeouts, deadline: float) -> tuple[float, str]:
    """How long to wait for the engine's response headers, and what to say if they don't come.

    A stream's headers come with its first token (first_byte); a JSON answer's only at the end.
    """
    remaining = max(deadline - time.monotonic(), 0.001)
    if stream and timeouts.first_byte < remaining:
        return (timeouts.first_byte,
                f"The engine did not start answering within {timeouts.first_byte:g}s (first_byte).")
    return remaining, f"The answer exceeded the total time limit of {timeouts.total:g}s."


def _nothing() -> None:
    return None



def resolve_pool(registry: Registry, principal: Principal, name: str) -> ModelPool:
    """The model's pool, if the key may use it; else a 404 that lists what it may use."""
    pool = registry.get(name)
    if pool is None or not principal.may_use(name):
        visible = [p.name for p in registry if principal.may_use(p.name)]
        hint = f" Available models: {', '.join(visible)}." if visible else ""
        if name == "qwen-vl" and pool is None:
            hint += (" No vision model is configured: add one with "
                     "`tram up --model qwen-vl=/path/to/vision-checkpoint` or under "
                     "`models:` in tram.yaml.")
        raise ModelNotFound(
            f"The model '{name}' does not exist or you do not have access to it.{hint}",
            param="model",
        )
    return pool


def not_served(path: str, model: str, why: str, how_to: str = "") -> RouteNotServed:
    return RouteNotServed(f"The model '{model}' does not serve POST {path}: {why}.{how_to}",
                          param="model")
