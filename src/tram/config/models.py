"""tram.yaml: a model (`models:` entries) and the engine `tram up` launches for it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from tram.config.base import Strict
from tram.config.upstreams import HealthConfig, RoutingConfig, Timeouts, UpstreamConfig

__all__ = ["BRIDGED_ROUTES", "EngineConfig", "MediaLimits", "ModelConfig", "RouteMode",
           "RouteName"]


_VLLM_ONLY = ("preset", "gpu_memory_utilization", "max_model_len", "tensor_parallel_size",
              "pipeline_parallel_size", "prefix_caching", "reasoning_parser",
              "tool_call_parser", "max_images", "max_pixels", "cpu_kv_cache_gib")


class EngineConfig(Strict):
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


class MediaLimits(Strict):
    """Video or audio parts a model accepts (refused unless set): each clip within these."""

    max_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    max_seconds: float = Field(30.0, gt=0)


RouteName = Literal["chat", "completions", "embeddings", "responses", "messages", "rerank", "score",
                    "tokenize", "detokenize", "transcriptions"]
RouteMode = Literal["auto", "native", "bridge", "off"]
BRIDGED_ROUTES = frozenset({"responses", "messages"})


class ModelConfig(Strict):
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

