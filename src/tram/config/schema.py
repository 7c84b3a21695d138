"""tram.yaml as a whole: the gateway's own sections (server, database, limits, usage, vision,
stored responses) and `TramConfig`, the document."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from tram.config.base import Strict
from tram.config.models import ModelConfig

__all__ = [
    "BatchesConfig",
    "DatabaseConfig",
    "LimitsConfig",
    "QueueConfig",
    "ResponsesConfig",
    "ServerConfig",
    "SharingConfig",
    "TramConfig",
    "UsageConfig",
    "VisionConfig",
]


class ServerConfig(Strict):
    host: str = "0.0.0.0"
    port: int = Field(4000, ge=1, le=65535)
    workers: int = Field(1, ge=1)
    max_body_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    # An audio upload (/v1/audio/transcriptions, multipart): held up to this size, 413 above.
    max_upload_bytes: int = Field(25 * 1024 * 1024, ge=1024)
    # On SIGTERM: stop accepting, let in-flight requests and streams finish for this long.
    shutdown_grace: int = Field(30, ge=0)
    # Bounds on every client, enforced by the HTTP server before any app code (server/):
    # the request line + headers (bytes; larger → 431), the seconds a head may take to arrive,
    # the seconds a body may pause between reads (→ 408, connection closed), the connections
    # one process holds (one more → 503), and the seconds an idle keep-alive connection stays.
    max_head_bytes: int = Field(64 * 1024, ge=4096, le=16 * 1024 * 1024)
    head_timeout: float = Field(10.0, gt=0)
    body_timeout: float = Field(10.0, gt=0)
    max_connections: int = Field(4096, ge=1)
    keep_alive_timeout: int = Field(5, ge=1)


class VisionConfig(Strict):
    max_image_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    allowed_types: list[str] = Field(
        default_factory=lambda: ["image/png", "image/jpeg", "image/webp", "image/gif"]
    )
    fetch_timeout: float = Field(10.0, gt=0)  # the whole fetch, redirects included
    fetch_connect_timeout: float = Field(5.0, gt=0)
    # Host names the gateway may fetch from (empty: any public host) and may not; an entry is
    # a name ("images.example.com") or every name under a domain ("*.example.com").
    fetch_allow_hosts: list[str] = Field(default_factory=list)
    fetch_deny_hosts: list[str] = Field(default_factory=list)
    # Fetched images kept by URL, so the same image in every turn of a conversation is fetched
    # once: at most this many bytes, each for at most this many seconds (0 turns it off).
    fetch_cache_bytes: int = Field(64 * 1024 * 1024, ge=0)
    fetch_cache_seconds: float = Field(300.0, ge=0)
    # Private, loopback and link-local addresses are refused when the gateway fetches an image
    # (SSRF); a test or an intranet deployment may allow them explicitly.
    allow_private_addresses: bool = False
    # An image whose header declares more pixels is refused before anything decodes it
    # (a decompression bomb); 50 MP lets any camera photo through.
    max_decode_pixels: int = Field(50_000_000, ge=1)
    # Images decoded, resized or re-encoded at once per process (the rest wait their turn, so
    # text requests keep the CPU they need).
    max_concurrent: int = Field(2, ge=1)
    # The budget of an image sent with detail: "low" (OpenAI's low detail is 512×512).
    low_detail_pixels: int = Field(512 * 512, ge=28 * 28)


class DatabaseConfig(Strict):
    url: str | None = None


class LimitsConfig(Strict):
    """Where per-key limits are counted. Without `redis_url` (or TRAM_REDIS_URL) each gateway
    process counts on its own, which is exact for one process. With it, every process and host
    shares the counters. `on_redis_error`: "open" (default) keeps serving while Redis is down,
    each process enforcing the limits on its own traffic; "closed" answers 503 to limited keys
    until Redis is back (the master key and unlimited keys are never refused)."""

    redis_url: str | None = None
    on_redis_error: Literal["open", "closed"] = "open"
    # Seconds; bounds what a hung Redis adds to a request (a refused connection fails at once).
    # Not much lower: a busy gateway's own event loop can delay a reply by a few hundred ms, and
    # a spurious timeout switches that process to local counting for 2 s.
    redis_timeout: float = Field(1.0, gt=0)
    redis_prefix: str = "tram:"


class UsageConfig(Strict):
    """Usage rows older than `retention_days` are deleted (None keeps them forever), in batches
    of `prune_batch` rows with a pause between, so neither SQLite nor PostgreSQL is locked."""

    retention_days: float | None = Field(None, gt=0)
    prune_interval: float = Field(3600.0, gt=0)  # seconds between pruning passes
    prune_batch: int = Field(5000, ge=1)


class ResponsesConfig(Strict):
    """Stored responses (`/v1/responses` with `store`), kept by the gateway in its database so
    that `previous_response_id` works across gateway processes, replicas and restarts."""

    store_default: bool = True  # a request that does not say (OpenAI's default: stored)
    retention_days: float = Field(30.0, gt=0)  # OpenAI keeps them 30 days
    # Stored bytes per key (JSON of each turn's input and answer), held when a turn is stored:
    # the key's oldest turns go to make room; a turn larger than the whole cap is not stored.
    max_bytes_per_key: int = Field(256 * 1024 * 1024, ge=1024)
    max_chain: int = Field(1000, ge=1)  # previous_response_id links followed at most
    # Stored conversation a `previous_response_id` may bring back into one request (JSON bytes
    # of the earlier turns' items sent to the engine); a longer one is a 400.
    max_expanded_bytes: int = Field(8 * 1024 * 1024, ge=1024)


class BatchesConfig(Strict):
    """Files (`/v1/files`) and the Batch API (`/v1/batches`): what a file may hold, and how each
    gateway process's batch runner takes lines from the database and paces them
    (batches/runner.py, batches/throttle.py)."""

    # An uploaded file's size; beyond it, 413 before the body is read (when its length is
    # declared). Files live in the database, so this also bounds one row.
    max_file_bytes: int = Field(50 * 1024 * 1024, ge=1024)
    max_lines: int = Field(50_000, ge=1)  # requests in one batch (OpenAI's limit)
    run: bool = True  # this process runs batch lines (False: it serves the API only)
    # A claimed line is this process's for `lease_seconds`, renewed while it runs; a process
    # that dies leaves its lines to be taken over once their lease ends.
    lease_seconds: float = Field(30.0, ge=1)
    poll_interval: float = Field(2.0, gt=0)  # seconds between looks for work while idle
    # Lines in flight per model and process: from `min_concurrency`, one more each
    # `adjust_interval` while the model's engines are idle, back to it at once when
    # interactive requests wait.
    min_concurrency: int = Field(1, ge=1)
    max_concurrency: int = Field(16, ge=1)
    adjust_interval: float = Field(0.5, gt=0)
    # A line refused for a passing reason (the key's rpm or concurrency, the model overloaded
    # or without an engine) is tried again after this many seconds.
    retry_seconds: float = Field(5.0, gt=0)
    # On shutdown, lines in flight get this long to finish before they are handed back.
    shutdown_grace: float = Field(10.0, ge=0)

    @model_validator(mode="after")
    def _bounds(self) -> BatchesConfig:
        if self.min_concurrency > self.max_concurrency:
            raise ValueError("min_concurrency is larger than max_concurrency")
        return self


_CLASSES = ("interactive", "batch")


class QueueConfig(Strict):
    """The fair queue in front of a saturated model (src/tram/sharing/): when its engines
    are full (`max_in_flight` reached, or every replica's engine reports requests waiting),
    new requests wait here, ordered by weighted fair share across keys, interactive strictly
    before batch, instead of first come, first served. Beyond the bounds: 429
    `model_overloaded` with Retry-After, as without a queue."""

    # Off: a model at max_in_flight refuses at once (429), as before the queue.
    enabled: bool = True
    # Requests waiting per model, all keys together; and per key.
    max_queue: int = Field(1024, ge=0)
    max_per_key: int = Field(256, ge=0)
    # Seconds a request of each class may wait for a slot before its 429.
    max_wait_seconds: dict[str, float] = Field(
        default_factory=lambda: {"interactive": 30.0, "batch": 600.0})
    # A key's share within its class when the key sets no weight of its own.
    weights: dict[str, float] = Field(
        default_factory=lambda: {"interactive": 1.0, "batch": 1.0})
    # Also read the engines' own queue (vLLM's num_requests_waiting, llama.cpp's deferred
    # requests, from /metrics every routing.scrape_interval) for models without
    # max_in_flight, even with one replica: when every replica reports requests waiting, new
    # ones wait here until one finishes or the engines' queue drains. On by default, so a
    # saturated fleet is shared fairly without a hand-tuned max_in_flight; an engine without
    # /metrics simply never signals. Models routed cache_aware over several replicas are read
    # anyway.
    engine_signal: bool = True
    # The most of the model's capacity (max_in_flight, or the engines' batch slots) a
    # class's running requests may hold, e.g. {"batch": 0.3}: the rest is a reserve kept
    # free for the other class, so an interactive request arriving beside a batch flood
    # finds a slot at once and its prompt's step carries fewer decodes. Unlisted: all of it.
    # bench/RESULTS.md (2026-12-06) measures the trade-off.
    class_share: dict[str, float] = Field(default_factory=dict)
    # At most this many of a class's requests computing their prompt at once, per model and
    # gateway process, e.g. {"batch": 1}: batch prompts then run one after another instead
    # of several at once, and an interactive arrival rarely finds every engine in a batch
    # prompt's step (a prompt is one long engine step that stalls every decode on its
    # replica). A request counts from its start for its prompt's estimated tokens ÷
    # prompt_tokens_per_second, or until it ends. Unlisted: no bound. A paced class goes
    # through the queue even while the model is unbounded, so its requests are held to
    # max_per_key waiting and its max_wait_seconds. docs/decisions.md, "Batch prompts one at
    # a time".
    class_prompts: dict[str, int] = Field(default_factory=dict)
    # At most this many of one key's requests computing their prompt at once, per model and
    # gateway process, while the model is saturated (more requests started and waiting than
    # it takes) and another key sent it a request within the last minute or has one waiting
    # (a key alone, or a model with room for all that waits, is not held), counted as
    # class_prompts counts. Without it a key sending short answers past saturation keeps
    # every engine in one prompt step after another and another key's arrival waits out the
    # step on every replica; with it, the rest of the engines' prompt time is kept for the
    # other keys' arrivals, at the cost of the busy key's throughput (at most N ×
    # prompt_tokens_per_second ÷ its prompts' tokens requests a second). E.g. 2 on a
    # 4-replica fleet. Off by default. docs/decisions.md, "Prompts per key".
    key_prompts: int | None = Field(None, ge=1)
    # How fast one engine computes a prompt, in tokens a second: both pacings' estimate
    # (Qwen3-8B on one H100: ~16,000; measured to hold within a third either way for
    # class_prompts, a quarter for key_prompts).
    prompt_tokens_per_second: float = Field(16_000.0, gt=0)

    @field_validator("max_wait_seconds", "weights", "class_share", "class_prompts")
    @classmethod
    def _classes(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(_CLASSES))
        if unknown:
            raise ValueError(f"unknown class {unknown[0]!r} (classes: interactive, batch)")
        if any(v <= 0 for v in value.values()):
            raise ValueError("must be positive")
        return value

    @field_validator("class_share")
    @classmethod
    def _shares(cls, value: dict[str, float]) -> dict[str, float]:
        if any(v > 1 for v in value.values()):
            raise ValueError("a share is at most 1")
        return value


class SharingConfig(Strict):
    """How a model's engines are shared between keys (src/tram/sharing/): each class's
    priority number sent to engines that schedule by it (lower first, as vLLM reads it), and
    the gateway's fair queue."""

    priorities: dict[str, int] = Field(
        default_factory=lambda: {"interactive": 0, "batch": 10})
    queue: QueueConfig = QueueConfig()

    @field_validator("priorities")
    @classmethod
    def _both_classes(cls, value: dict[str, int]) -> dict[str, int]:
        return {"interactive": 0, "batch": 10, **value}


class TramConfig(Strict):
    server: ServerConfig = ServerConfig()
    database: DatabaseConfig = DatabaseConfig()
    limits: LimitsConfig = LimitsConfig()
    usage: UsageConfig = UsageConfig()
    vision: VisionConfig = VisionConfig()
    responses: ResponsesConfig = ResponsesConfig()
    batches: BatchesConfig = BatchesConfig()
    sharing: SharingConfig = SharingConfig()
    models: list[ModelConfig] = Field(default_factory=list)

    @field_validator("models")
    @classmethod
    def _unique_names(cls, models: list[ModelConfig]) -> list[ModelConfig]:
        seen: set[str] = set()
        for model in models:
            if model.name in seen:
                raise ValueError(f"model name {model.name!r} appears twice")
            seen.add(model.name)
        return models

    def model(self, name: str) -> ModelConfig | None:
        return next((m for m in self.models if m.name == name), None)

