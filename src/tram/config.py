"""Settings (environment and `.env`) and the `tram.yaml` schema.

Both are plain values passed into `create_app`; nothing here is global. A configuration error
is raised as `ConfigError`, whose one-line message names the file, the key and what is wrong;
the CLI prints it and exits with status 2.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from dotenv import dotenv_values
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tram.files import private_dir

__all__ = [
    "ConfigError",
    "EngineConfig",
    "HealthConfig",
    "LimitsConfig",
    "MediaLimits",
    "ModelConfig",
    "RoutingConfig",
    "ServerConfig",
    "Settings",
    "Timeouts",
    "TramConfig",
    "UpstreamConfig",
    "UsageConfig",
    "VisionConfig",
    "load_config",
    "load_settings",
    "parse_config",
    "read_yaml",
]

MASTER_KEY_VARS = ("TRAM_MASTER_KEY", "LITELLM_MASTER_KEY")


class ConfigError(Exception):
    """A configuration mistake; the message is one line meant for the operator."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Timeouts(_Strict):
    """Seconds. `first_byte` bounds the wait for the engine's response headers (prefill and
    queueing included); `idle` the gap between two streamed chunks; `total` the whole request."""

    connect: float = Field(5.0, gt=0)
    first_byte: float = Field(300.0, gt=0)
    idle: float = Field(120.0, gt=0)
    total: float = Field(1800.0, gt=0)


class RoutingConfig(_Strict):
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


class HealthConfig(_Strict):
    """Active probes (GET <upstream>/models) and passive ejection (a circuit per replica)."""

    probe_interval: float = Field(5.0, gt=0)
    probe_timeout: float = Field(2.0, gt=0)
    unhealthy_after: int = Field(2, ge=1)  # failed probes in a row
    healthy_after: int = Field(1, ge=1)  # good probes in a row
    eject_after: int = Field(3, ge=1)  # connect errors / 5xx in a row open the circuit
    eject_seconds: float = Field(10.0, gt=0)  # then one trial request (half-open)


class UpstreamConfig(_Strict):
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


_VLLM_ONLY = ("preset", "gpu_memory_utilization", "max_model_len", "tensor_parallel_size",
              "pipeline_parallel_size", "prefix_caching", "reasoning_parser",
              "tool_call_parser", "max_images", "max_pixels", "cpu_kv_cache_gib")


class EngineConfig(_Strict):
    """An engine that `tram up` launches; its upstream is filled in when it starts.

    The vLLM fields (engines/vllm.py) override what the preset for the model gives: "auto"
    picks the preset from the model's name (Qwen3, Qwen3-VL), "none" sets nothing."""

    kind: Literal["llamacpp", "transformers", "vllm"]
    model: str
    args: list[str] = Field(default_factory=list)
    port: int | None = Field(None, ge=1, le=65535)
    served_name: str | None = None
    parallel: int = Field(8, ge=1)
    context: int = Field(4096, ge=256)
    threads: int | None = Field(None, ge=1)
    startup_timeout: float = Field(600.0, gt=0)
    # GPUs this engine may use (CUDA_VISIBLE_DEVICES); vllm and transformers.
    gpus: list[int] | None = Field(None, min_length=1)
    # vLLM only.
    preset: Literal["auto", "qwen3", "qwen3-vl", "qwen3-vl-thinking", "none"] = "auto"
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    max_model_len: int | None = Field(None, ge=256)
    tensor_parallel_size: int | None = Field(None, ge=1)
    pipeline_parallel_size: int | None = Field(None, ge=1)
    prefix_caching: bool = True
    reasoning_parser: str | None = "auto"
    tool_call_parser: str | None = "auto"
    max_images: int | None = Field(None, ge=0)  # images per prompt
    max_pixels: int | None = Field(None, ge=28 * 28)  # per image, before the engine's processor
    # vLLM's CPU build: GiB of memory for the KV cache (VLLM_CPU_KVCACHE_SPACE, whole GiB);
    # left unset, vLLM reserves most of the machine and refuses to start beside others.
    cpu_kv_cache_gib: int = Field(4, ge=1)

    @model_validator(mode="after")
    def _vllm_fields_only_for_vllm(self) -> EngineConfig:
        if self.kind != "vllm":
            for name in _VLLM_ONLY:
                if name in self.model_fields_set:
                    raise ValueError(f"{name} is a setting of kind vllm, not {self.kind}")
        return self


class MediaLimits(_Strict):
    """Video or audio parts a model accepts (refused unless set): each clip within these."""

    max_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    max_seconds: float = Field(30.0, gt=0)


RouteName = Literal["chat", "completions", "embeddings", "responses", "messages", "rerank", "score",
                    "tokenize", "detokenize", "transcriptions"]
RouteMode = Literal["auto", "native", "bridge", "off"]
BRIDGED_ROUTES = frozenset({"responses", "messages"})


class ModelConfig(_Strict):
    name: str = Field(min_length=1)
    vision: bool = False
    description: str | None = None
    engine: EngineConfig | None = None
    upstreams: list[UpstreamConfig] = Field(default_factory=list)
    timeouts: Timeouts = Timeouts()
    # Used when a request names neither max_tokens nor max_completion_tokens; None leaves it to
    # the engine (which may then generate up to the end of its context).
    default_max_tokens: int | None = Field(None, ge=1)
    routing: RoutingConfig = RoutingConfig()
    health: HealthConfig = HealthConfig()
    # A connect failure or a 502/503 before any byte reached the client is tried again on
    # another replica this many times.
    retries: int = Field(1, ge=0, le=5)
    # Requests in flight for this model beyond which new ones get 429 instead of queueing.
    max_in_flight: int | None = Field(None, ge=1)
    # Who fetches image URLs: the gateway (default: SSRF-safe, the image vetted and fitted to
    # the pixel budget, then forwarded as a data URL) or the engine itself (vLLM can; only for
    # operators who trust their engine's own allow-list: nothing is checked then).
    image_fetch: Literal["engine", "gateway"] = "gateway"
    # Usage a stream asks its engine for: "final" (the last chunk; every OpenAI-compatible
    # engine), "running" (also on every chunk: vLLM's continuous_usage_stats, so a stream the
    # client cuts is charged the engine's own count), "auto": running for `engine.kind: vllm`.
    stream_usage: Literal["auto", "final", "running"] = "auto"
    # Qwen3's thinking, applied as chat_template_kwargs.enable_thinking to every request that
    # does not set it (vLLM's reasoning parser needs to know: a template default alone makes it
    # return the whole answer as reasoning). None: left to the engine.
    thinking: Literal["on", "off"] | None = None
    # Images one request may carry (more → 400 too_many_images); default: the vLLM engine's
    # `max_images` when it has one, else 8.
    max_images: int | None = Field(None, ge=1)
    # Pixels per image an engine may receive; larger images are downscaled by the gateway.
    max_pixels: int | None = Field(None, ge=28 * 28)
    # Video (MP4) and audio (WAV) parts: refused unless enabled here, then vetted and capped.
    video: MediaLimits | None = None
    audio: MediaLimits | None = None
    # Routes (chat and the rest), each "auto" unless named here: "native" (forwarded),
    # "bridge" (responses and messages only: translated to the engine's chat completions),
    # "off" (refused with a 404 naming the route and the model). "auto" forwards, and a route
    # the engine answers 404/405/501 for is bridged where a bridge exists, else refused.
    routes: dict[RouteName, RouteMode] = Field(default_factory=dict)

    @field_validator("routes", mode="before")
    @classmethod
    def _yaml_booleans(cls, routes: Any) -> Any:
        """YAML reads a bare `off` (and `on`) as a boolean: take them as meant."""
        if isinstance(routes, dict):
            return {name: ("off" if mode is False else "auto" if mode is True else mode)
                    for name, mode in routes.items()}
        return routes

    @field_validator("routes")
    @classmethod
    def _bridges_exist(cls, routes: dict[str, str]) -> dict[str, str]:
        for name, mode in routes.items():
            if mode == "bridge" and name not in BRIDGED_ROUTES:
                raise ValueError(f"route {name!r} has no bridge to chat; use auto, native or off")
        return routes

    def route_mode(self, name: str) -> str:
        mode = self.routes.get(name)  # type: ignore[call-overload]
        if mode is not None:
            return str(mode)
        if name == "responses" and self.engine is not None and self.engine.kind == "llamacpp":
            # llama.cpp's own Responses stream lacks output_index and sequence_number, which
            # the openai SDK's stream helpers need: its chat completions, bridged, are complete.
            return "bridge"
        return "auto"

    def pixel_budget(self) -> int:
        """The most pixels an engine receives per image: `max_pixels`, else the vLLM engine's,
        else ~1 MP (1,003,520 px: Qwen2-VL's 1280 tokens of 28×28 px; Qwen3-VL's tokens are
        32×32 px, 16-px patches merged 2×2, so at most 980 of them)."""
        if self.max_pixels is not None:
            return self.max_pixels
        if self.engine is not None and self.engine.max_pixels is not None:
            return self.engine.max_pixels
        return 1280 * 28 * 28

    def images_per_request(self) -> int:
        if self.max_images is not None:
            return self.max_images
        if self.engine is not None and self.engine.max_images is not None:
            return max(self.engine.max_images, 1)
        return 8

    def running_usage(self) -> bool:
        if self.stream_usage == "auto":
            return self.engine is not None and self.engine.kind == "vllm"
        return self.stream_usage == "running"


class ServerConfig(_Strict):
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


class VisionConfig(_Strict):
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


class DatabaseConfig(_Strict):
    url: str | None = None


class LimitsConfig(_Strict):
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


class UsageConfig(_Strict):
    """Usage rows older than `retention_days` are deleted (None keeps them forever), in batches
    of `prune_batch` rows with a pause between, so neither SQLite nor PostgreSQL is locked."""

    retention_days: float | None = Field(None, gt=0)
    prune_interval: float = Field(3600.0, gt=0)  # seconds between pruning passes
    prune_batch: int = Field(5000, ge=1)


class ResponsesConfig(_Strict):
    """Stored responses (`/v1/responses` with `store`), kept by the gateway in its database so
    that `previous_response_id` works across gateway processes, replicas and restarts."""

    store_default: bool = True  # a request that does not say (OpenAI's default: stored)
    retention_days: float = Field(30.0, gt=0)  # OpenAI keeps them 30 days
    max_bytes_per_key: int = Field(256 * 1024 * 1024, ge=1024)  # oldest dropped past this
    max_chain: int = Field(1000, ge=1)  # previous_response_id links followed at most


class TramConfig(_Strict):
    server: ServerConfig = ServerConfig()
    database: DatabaseConfig = DatabaseConfig()
    limits: LimitsConfig = LimitsConfig()
    usage: UsageConfig = UsageConfig()
    vision: VisionConfig = VisionConfig()
    responses: ResponsesConfig = ResponsesConfig()
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


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand(value: Any, env: Mapping[str, str], where: str, source: str) -> Any:
    """Expand ${VAR} and ${VAR:-default} in every string of the parsed YAML."""
    if isinstance(value, dict):
        return {k: _expand(v, env, f"{where}.{k}" if where else str(k), source) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, env, f"{where}[{i}]", source) for i, v in enumerate(value)]
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ConfigError(f"{source}: {where}: environment variable {name} is not set")

        return _VAR.sub(substitute, value)
    return value


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def parse_config(data: Any, source: str, env: Mapping[str, str] | None = None) -> TramConfig:
    """Validate parsed YAML; `source` names the file in error messages."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(data).__name__}")
    data = _expand(data, os.environ if env is None else env, "", source)
    try:
        return TramConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "unknown key"
        raise ConfigError(f"{source}: {_location(tuple(first['loc']))}: {message}") from None


def read_yaml(path: Path) -> Any:
    """The parsed YAML of a config file; any problem is a one-line ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: invalid YAML{at}: {problem}") from None
    return data


def load_config(path: Path, env: Mapping[str, str] | None = None) -> TramConfig:
    return parse_config(read_yaml(path), str(path), env)


@dataclass(frozen=True)
class Settings:
    """What the process environment (and `.env`) says; built once by the CLI or a test."""

    master_key: str | None
    master_key_source: str
    config_path: Path | None
    database_url: str | None = None
    redis_url: str | None = None
    data_dir: Path = Path("data")
    env: Mapping[str, str] = field(default_factory=dict)


def _merged_env(environ: Mapping[str, str], dotenv_path: Path) -> dict[str, str]:
    merged: dict[str, str] = {}
    if dotenv_path.is_file():
        merged.update({k: v for k, v in dotenv_values(dotenv_path).items() if v is not None})
    merged.update(environ)  # the real environment wins over .env, as usual
    return merged


def load_settings(
    environ: Mapping[str, str] | None = None,
    dotenv_path: Path = Path(".env"),
    config_path: Path | None = None,
    generate_key: bool = False,
) -> Settings:
    """Read TRAM_* (and LITELLM_MASTER_KEY) from the environment and `.env`.

    With `generate_key`, a missing master key is created once in the data dir (mode 0600) so
    that a fresh `tram up` is usable; its path is reported as the key's source.
    """
    env = _merged_env(os.environ if environ is None else environ, dotenv_path)
    data_dir = Path(env.get("TRAM_DATA_DIR", "data"))
    key, source = None, "none"
    for var in MASTER_KEY_VARS:
        if env.get(var):
            key = env[var]
            source = f"{var} ({'environment' if var in (environ or os.environ) else dotenv_path})"
            break
    if key is None:
        key_file = data_dir / "master.key"
        if key_file.is_file():
            key, source = key_file.read_text().strip(), str(key_file)
        elif generate_key:
            private_dir(data_dir, tighten=True)
            key = "sk-tram-master-" + secrets.token_urlsafe(24)
            key_file.touch(mode=0o600)
            key_file.write_text(key + "\n")
            source = f"{key_file} (generated now)"
    if config_path is None and env.get("TRAM_CONFIG"):
        config_path = Path(env["TRAM_CONFIG"])
    if config_path is None and Path("tram.yaml").is_file():
        config_path = Path("tram.yaml")
    return Settings(
        master_key=key,
        master_key_source=source,
        config_path=config_path,
        database_url=env.get("TRAM_DATABASE_URL"),
        redis_url=env.get("TRAM_REDIS_URL"),
        data_dir=data_dir,
        env=env,
    )
