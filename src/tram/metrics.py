"""Prometheus metrics, one registry per app (no process globals, so tests build their own).

Served at GET /metrics behind the master key. With `--workers N` each worker counts its own
requests; scrape each worker or run one worker per container (documented in README).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("tram_requests", "Model requests by model, route (chat, "
                                "completions, responses, messages, embeddings, …) and status",
                                ["model", "route", "status"], registry=r)
        self.latency = Histogram("tram_request_duration_seconds",
                                 "Whole request, by model and route", ["model", "route"],
                                 buckets=_LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("tram_time_to_first_byte_seconds",
                              "Request start to the first byte of the engine's answer",
                              ["model"], buckets=_LATENCY_BUCKETS, registry=r)
        self.tokens = Counter("tram_tokens", "Tokens reported by engines",
                              ["model", "direction"], registry=r)
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
        self._decisions: dict[tuple[str, str], Any] = {}
        self._per_model: dict[tuple[str, str], tuple[Any, Any, Any, Any]] = {}
        self._per_status: dict[tuple[str, str, int], Any] = {}

    def observe_request(self, model: str, status: int, seconds: float, first_byte: float | None,
                        prompt_tokens: int | None, completion_tokens: int | None,
                        route: str = "chat") -> None:
        """Everything one finished request adds; label children are cached (a `labels()`
        call costs several microseconds, and this runs on every request)."""
        children = self._per_model.get((model, route))
        if children is None:
            children = self._per_model[(model, route)] = (
                self.latency.labels(model, route), self.ttft.labels(model),
                self.tokens.labels(model, "prompt"), self.tokens.labels(model, "completion"))
        latency, ttft, prompt, completion = children
        counter = self._per_status.get((model, route, status))
        if counter is None:
            counter = self._per_status[(model, route, status)] = \
                self.requests.labels(model, route, str(status))
        counter.inc()
        latency.observe(seconds)
        if first_byte is not None:
            ttft.observe(first_byte)
        if prompt_tokens:
            prompt.inc(prompt_tokens)
        if completion_tokens:
            completion.inc(completion_tokens)

    def count_decision(self, model: str, reason: str) -> None:
        child = self._decisions.get((model, reason))
        if child is None:
            child = self._decisions[(model, reason)] = self.routing_decisions.labels(model, reason)
        child.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
