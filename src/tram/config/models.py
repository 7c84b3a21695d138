"""tram.yaml: a model (`models:` entries) and the engine `tram up` launches for it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from tram.config.base import Strict
from tram.config.upstreams import HealthConfig, RoutingConfig, Timeouts, UpstreamConfig
from tram.kinds import EngineConfig

__all__ = ["EngineConfig", "MediaLimits", "ModelConfig", "RouteMode"]


class MediaLimits(Strict):
    """Video or audio parts a model accepts (refused unless set): each clip within these."""

    max_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    max_seconds: float = Field(30.0, gt=0)


RouteMode = Literal["auto", "native", "bridge", "off"]


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
    # client cuts is charged the engine's own count), "auto": running where the engine's kind
    # reports it.
    stream_usage: Literal["auto", "final", "running"] = "auto"
    # Each request's priority (its key's class or number, sharing.priorities; batch lines
    # behind) sent as the body's `priority` on chat, completions, responses and embeddings:
    # "auto" where the engine's kind schedules by it (vLLM with --scheduling-policy priority,
    # its presets' default), "send" always (an external vLLM started with that flag), "off"
    # never (a client's own `priority` is then left out too).
    engine_priority: Literal["auto", "send", "off"] = "auto"
    # Qwen3's thinking, applied as chat_template_kwargs.enable_thinking to every request that
    # does not set it (vLLM's reasoning parser needs to know: a template default alone makes it
    # return the whole answer as reasoning). None: left to the engine.
    thinking: Literal["on", "off"] | None = None
    # Images one request may carry (more → 400 too_many_images); default: the vLLM engine's
    # `max_images` when it has one, else 8.
    max_images: int | None = Field(None, ge=1)
    # Pixels per image an engine may receive; larger images are downscaled by the gateway.
    max_pixels: int | None = Field(None, ge=28 * 28)
    # Responses tools the gateway cannot run (hosted web_search, file_search, code_interpreter,
    # …) on a bridged route: left out and said so (an x-tram-ignored-tools header, a log
    # line), or the request refused with a 400 naming the tool.
    builtin_tools: Literal["ignore", "refuse"] = "ignore"
    # Video (MP4) and audio (WAV) parts: refused unless enabled here, then vetted and capped.
    video: MediaLimits | None = None
    audio: MediaLimits | None = None
    # Routes (chat and the rest, by the names of the route table), each "auto" unless named
    # here: "native" (forwarded), "bridge" (where a bridge exists: translated to the engine's
    # chat completions), "off" (refused with a 404 naming the route and the model). "auto"
    # forwards, and a route the engine answers 404/405/501 for is bridged where a bridge
    # exists, else refused. The names are checked against the table when the app is built.
    routes: dict[str, RouteMode] = Field(default_factory=dict)

    @field_validator("routes", mode="before")
    @classmethod
    def _yaml_booleans(cls, routes: Any) -> Any:
        """YAML reads a bare `off` (and `on`) as a boolean: take them as meant."""
        if isinstance(routes, dict):
            return {name: ("off" if mode is False else "auto" if mode is True else mode)
                    for name, mode in routes.items()}
        return routes

    def route_mode(self, name: str) -> str:
        mode = self.routes.get(name)
        if mode is not None:
            return str(mode)
        if self.engine is not None and name in self.engine.bridged_routes:
            return "bridge"  # the engine kind's own route is incomplete (kinds/)
        return "auto"

    def pixel_budget(self) -> int:
        """The most pixels an engine receives per image: `max_pixels`, else the vLLM engine's,
        else ~1 MP (1,003,520 px: Qwen2-VL's 1280 tokens of 28×28 px; Qwen3-VL's tokens are
        32×32 px, 16-px patches merged 2×2, so at most 980 of them)."""
        if self.max_pixels is not None:
            return self.max_pixels
        engine_pixels = self.engine.image_limits()[1] if self.engine is not None else None
        return engine_pixels if engine_pixels is not None else 1280 * 28 * 28

    def images_per_request(self) -> int:
        if self.max_images is not None:
            return self.max_images
        engine_images = self.engine.image_limits()[0] if self.engine is not None else None
        return max(engine_images, 1) if engine_images is not None else 8

    def sends_priority(self) -> bool:
        if self.engine_priority == "auto":
            return self.engine is not None and self.engine.schedules_by_priority()
        return self.engine_priority == "send"

    def running_usage(self) -> bool:
        if self.stream_usage == "auto":
            return self.engine is not None and self.engine.running_usage
        return self.stream_usage == "running"

