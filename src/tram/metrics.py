"""Prometheus metrics, one registry per app (no process globals, so tests build their own).

Served at GET /metrics behind the master key. With `--workers N` each worker counts its own
requests; scrape each worker or run one worker per container (documented in README).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    HistogramMetricFamily,
    Metric,
)

__all__ = ["Metrics", "RequestStats"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_BOUNDS = tuple(float(b) for b in _LATENCY_BUCKETS)
# The `le` labels as prometheus_client writes them ("0.005", "1.0", "300.0").
_LE = [repr(b) for b in _BOUNDS] + ["+Inf"]


class _Histogram:
    __slots__ = ("buckets", "count", "sum")

    def __init__(self) -> None:
        self.buckets = [0] * (len(_BOUNDS) + 1)  # per bucket, not cumulative; the last: +Inf
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.buckets[bisect_left(_BOUNDS, value)] += 1  # a value on a bound counts in it
        self.count += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        total, out = 0, []
        for le, count in zip(_LE, self.buckets, strict=True):
            total += count
            out.append((le, float(total)))
        return out


class RequestStats:
    """What every finished model request adds (requests, duration, time to first byte,
    tokens), kept as plain numbers and turned into Prometheus families only when /metrics is
    read. prometheus_client's own Counter and Histogram take a lock per value and walk the
    buckets in Python, several times the cost of these plain numbers (docs/decisions.md).
    Updated on the event loop only
    (the gateway's one thread that serves requests), so no lock is needed; read on it too."""

    def __init__(self) -> None:
        self._requests: dict[tuple[str, str, int], int] = {}
        self._latency: dict[tuple[str, str], _Histogram] = {}
        self._ttft: dict[str, _Histogram] = {}
        self._tokens: dict[tuple[str, str], int] = {}

    def observe(self, model: str, status: int, seconds: float, first_byte: float | None,
                prompt_tokens: int | None, completion_tokens: int | None, route: str) -> None:
        key = (model, route, status)
        requests = self._requests
        requests[key] = requests.get(key, 0) + 1
        histogram = self._latency.get((model, route))
        if histogram is None:
            histogram = self._latency[(model, route)] = _Histogram()
        histogram.observe(seconds)
        if first_byte is not None:
            ttft = self._ttft.get(model)
            if ttft is None:
                ttft = self._ttft[model] = _Histogram()
            ttft.observe(first_byte)
        tokens = self._tokens
        if prompt_tokens:
            tokens[(model, "prompt")] = tokens.get((model, "prompt"), 0) + prompt_tokens
        if completion_tokens:
            tokens[(model, "completion")] = \
                tokens.get((model, "completion"), 0) + completion_tokens

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "tram_requests", "Model requests by model, route (chat, completions, responses, "
            "messages, embeddings, …) and status", labels=["model", "route", "status"])
        for (model, route, status), count in list(self._requests.items()):
            requests.add_metric([model, route, str(status)], count)
        latency = HistogramMetricFamily("tram_request_duration_seconds",
                                        "Whole request, by model and route",
                                        labels=["model", "route"])
        for (model, route), histogram in list(self._latency.items()):
            latency.add_metric([model, route], histogram.cumulative(), histogram.sum)
        ttft = HistogramMetricFamily("tram_time_to_first_byte_seconds",
                                     "Request start to the first byte of the engine's answer",
                                     labels=["model"])
        for model, histogram in list(self._ttft.items()):
            ttft.add_metric([model], histogram.cumulative(), histogram.sum)
        tokens = CounterMetricFamily("tram_tokens", "Tokens reported by engines",
                                     labels=["model", "direction"])
        for (model, direction), count in list(self._tokens.items()):
            tokens.add_metric([model, direction], count)
        yield from (requests, latency, ttft, tokens)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = RequestStats()
        r.register(self.requests)
        self.in_flight = Gauge("tram_replica_in_flight", "Requests in flight per replica",
                               ["model", "replica"], registry=r)
        self.healthy = Gauge("tram_replica_healthy", "1 when the replica takes traffic",
                             ["model", "replica"], registry=r)
        self.retries = Counter("tram_retries", "Requests retried on another replica",
                               ["model"], registry=r)
        self.circuit_opened = Counter("tram_circuit_opened", "Replica ejections",
                                      ["model", "replica"], registry=r)
        self.rejected = Counter("tram_rejected", "Requests refused before reaching an engine",
                                ["model", "reason"], registry=r)
        self.connections_closed = Counter(
            "tram_connections_closed", "Connections the HTTP server closed on a client: "
            "head_too_large, head_timeout, body_timeout, invalid_http, over_capacity",
            ["reason"], registry=r)
        self.unauthenticated = Counter(
            "tram_unauthenticated_requests", "Requests refused for a missing or invalid key "
            "(counted here only: they write nothing to the journal or the store)",
            ["code"], registry=r)

        self.routing_decisions = Counter(
            "tram_routing_decisions", "Replica choices of cache_aware routing, by reason: "
            "prefix_hit (where this prompt's prefix was sent before), anchor_owner / "
            "sticky_user (the conversation's consistent-hash owner), load_spill (the next "
            "owner: the first was over the load bound), load_fallback (least loaded)",
            ["model", "reason"], registry=r)
        self.prefix_hit_estimate = Gauge(
            "tram_replica_prefix_hit_estimate", "Share of routed prompts' blocks the gateway "
            "expected this replica to hold (recent average)", ["model", "replica"], registry=r)
        self.engine_penalty = Gauge(
            "tram_replica_engine_load", "Load the replica's engine reports on /metrics "
            "(waiting requests and KV pressure, in requests' worth)", ["model", "replica"],
            registry=r)
        self.queue_wait = Histogram(
            "tram_queue_wait_seconds", "Time a request waited in its model's fair queue "
            "before it started (those that started after waiting)", ["model", "class"],
            buckets=_LATENCY_BUCKETS, registry=r)
        self._decisions: dict[tuple[str, str], Any] = {}

    def observe_request(self, model: str, status: int, seconds: float, first_byte: float | None,
                        prompt_tokens: int | None, completion_tokens: int | None,
                        route: str = "chat") -> None:
        """Everything one finished request adds (see RequestStats)."""
        self.requests.observe(model, status, seconds, first_byte, prompt_tokens,
                              completion_tokens, route)

    def count_decision(self, model: str, reason: str) -> None:
        child = self._decisions.get((model, reason))
        if child is None:
            child = self._decisions[(model, reason)] = self.routing_decisions.labels(model, reason)
        child.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
