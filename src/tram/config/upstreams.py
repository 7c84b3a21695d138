"""tram.yaml: how the gateway reaches a model's engines — its upstreams, how requests are
spread over them (`routing`), how their health is judged (`health`), and how long it waits
(`timeouts`)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from tram.config.base import Strict

__all__ = ["HealthConfig", "RoutingConfig", "Timeouts", "UpstreamConfig"]


class Timeouts(Strict):
    """Seconds. `first_byte` bounds the wait for the engine's response headers (prefill and
    queueing included); `idle` the gap between two streamed chunks; `total` the whole request."""

    connect: float = Field(5.0, gt=0)
    first_byte: float = Field(300.0, gt=0)
    idle: float = Field(120.0, gt=0)
    total: float = Field(1800.0, gt=0)


class RoutingConfig(Strict):
    """How a model's requests are spread over its replicas.

    least_outstanding: the replica with the fewest requests in flight (ties at random).
    round_robin: in turn, in proportion to each upstream's `weight`.
    affinity: requests with the same `user`, else the same prompt prefix, go to the same
    replica (so the engine's prefix cache hits) while it is healthy and not overloaded;
    otherwise least outstanding.
    cache_aware: where the prompt's prefix is most likely cached (learned from this gateway's
    own decisions, and a consistent-hash owner every gateway agrees on), within a load bound
    that reads the engines' /metrics (routing/prefix.py).
    auto (default): cache_aware for a model with several replicas, else least_outstanding.
    """

    policy: Literal["auto", "least_outstanding", "round_robin", "affinity", "cache_aware"] = \
        "auto"
    affinity_prefix_chars: int = Field(2048, ge=16)
    # The sticky replica is skipped when it has this many more requests in flight than the
    # least busy one.
    affinity_overload: int = Field(4, ge=1)
    # cache_aware: prompt blocks of this many characters (~128 tokens), up to max_blocks.
    block_chars: int = Field(512, ge=16)
    max_blocks: int = Field(64, ge=1, le=4096)
    table_size: int = Field(200_000, ge=1000)  # learned block → replica entries kept
    load_factor: float = Field(1.25, gt=1)  # no replica over this × the mean load …
    load_slack: float = Field(2.0, ge=0)  # … plus this many requests
    anchor_candidates: int = Field(3, ge=1)  # ring successors considered after the owner
    # A conversation's anchor: what precedes its first user message and this much of it.
    anchor_chars: int = Field(1024, ge=16)
    prefix_weight: float = Field(2.0, ge=0)
    prefix_half_chars: int = Field(4096, ge=1)  # a match this long scores prefix_weight / 2
    anchor_weight: float = Field(1.0, ge=0)
    load_weight: float = Field(1.0, ge=0)
    # Engine load from each replica's /metrics (vLLM's or llama.cpp's names), scraped in the
    # background: waiting requests and KV-cache pressure add to a replica's load.
    scrape_metrics: bool = True
    scrape_interval: float = Field(1.0, gt=0)
    scrape_timeout: float = Field(0.5, gt=0)
    queue_weight: float = Field(1.0, ge=0)
    kv_weight: float = Field(4.0, ge=0)

    @property
    def reading_lifetime(self) -> float:
        """How long an engine's reading counts: three scrapes' worth, each up to one timeout
        and then one interval before the next. One missed scrape on a busy machine must not
        forget a queue the engine reported."""
        return 3 * (self.scrape_interval + self.scrape_timeout)


class HealthConfig(Strict):
    """Active probes (GET <upstream>/models) and passive ejection (a circuit per replica)."""

    probe_interval: float = Field(5.0, gt=0)
    probe_timeout: float = Field(2.0, gt=0)
    unhealthy_after: int = Field(2, ge=1)  # failed probes in a row
    healthy_after: int = Field(1, ge=1)  # good probes in a row
    eject_after: int = Field(3, ge=1)  # connect errors / 5xx in a row open the circuit
    eject_seconds: float = Field(10.0, gt=0)  # then one trial request (half-open)


class UpstreamConfig(Strict):
    url: str
    served_name: str | None = None
    api_key: str | None = None
    weight: int = Field(1, ge=1)
    # For an https engine whose certificate is signed by a private CA (PEM file); public
    # certificates are verified against the system's CAs without it.
    ca_file: str | None = None
    # "dns": the URL's host names a set of engines (a Kubernetes headless Service): every
    # address it resolves to is a replica, re-read every `discover_interval` seconds.
    discover: Literal["none", "dns"] = "none"
    discover_interval: float = Field(10.0, gt=0)
    # A Unix socket the engine listens on (an absolute path): the connection goes there, the
    # URL still gives the paths and the Host header. What `tram up` uses for its own engines.
    socket: str | None = None

    @model_validator(mode="after")
    def _dns_over_http(self) -> UpstreamConfig:
        if self.socket is not None and (not self.socket.startswith("/")
                                        or not self.url.startswith("http://")):
            raise ValueError("socket must be an absolute path, with an http:// URL")
        if self.discover == "dns" and not self.url.startswith("http://"):
            raise ValueError("discover: dns needs an http:// URL (replicas are reached by "
                             "address; put TLS in front of the gateway, not between it and "
                             "engines inside the cluster)")
        return self

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"must be an http(s) URL such as http://127.0.0.1:8001/v1, got {value!r}")
        return value.rstrip("/")

