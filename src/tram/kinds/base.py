"""What every engine kind is: its `engine:` settings in tram.yaml (a pydantic model, one per
kind, told apart by `kind`), the command line that starts it, and what the gateway needs to
know about it (which routes it serves only through a bridge, whether it reports running usage
on every streamed chunk, what images it takes). Adding a kind is one class beside these.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["EngineBase", "EngineCommand", "Listen"]


@dataclass(frozen=True)
class Listen:
    """Where an engine listens: a Unix socket (what `tram up` gives its engines: a folder only
    its user can enter) or, when the operator set `engine.port`, a loopback port."""

    socket: Path | None = None
    port: int | None = None

    @property
    def url(self) -> str:
        """The engine's OpenAI base URL as the gateway addresses it (over `socket`, if set)."""
        return "http://localhost/v1" if self.socket else f"http://127.0.0.1:{self.port}/v1"

    def __str__(self) -> str:
        return f"unix:{self.socket}" if self.socket else f"http://127.0.0.1:{self.port}"


@dataclass(frozen=True)
class EngineCommand:
    argv: list[str]
    served_name: str  # the model name the engine answers to (the gateway rewrites to it)
    health_path: str = "/health"  # GET it until 200: the engine has loaded its model
    env: dict[str, str] = field(default_factory=dict)
    # What the kernel sends the engine if `tram up` dies without stopping it: SIGTERM lets an
    # engine with processes of its own (vLLM) stop them; one that can hang in its shutdown
    # takes SIGKILL, since nobody is left to send it after a grace period.
    parent_death_signal: int = signal.SIGTERM


class EngineBase(BaseModel):
    """The settings every kind takes; a kind adds its own fields and facts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Routes this kind serves through the chat bridge by default (its own are incomplete).
    bridged_routes: ClassVar[frozenset[str]] = frozenset()
    # Whether it reports usage on every streamed chunk when asked (what a cut stream is
    # charged), so the gateway asks for it.
    running_usage: ClassVar[bool] = False

    model: str
    args: list[str] = Field(default_factory=list)
    port: int | None = Field(None, ge=1, le=65535)
    served_name: str | None = None
    threads: int | None = Field(None, ge=1)
    startup_timeout: float = Field(600.0, gt=0)
    # GPUs this engine may use (CUDA_VISIBLE_DEVICES), where the kind uses GPUs.
    gpus: list[int] | None = Field(None, min_length=1)

    @property
    def kind_name(self) -> str:
        return str(getattr(self, "kind"))  # noqa: B009 - each kind declares its own literal

    @classmethod
    def serves_path(cls, path: Path) -> bool:
        """Whether `tram up --model alias=PATH` picks this kind for `path`."""
        return False

    def image_limits(self) -> tuple[int | None, int | None]:
        """(images per request, pixels per image) the engine was started to take."""
        return None, None

    def context_window(self) -> int | None:
        """Tokens of context one request may use, as the engine is started (None: unknown)."""
        return None

    def takes_tools(self) -> bool:
        """Whether the engine parses tool calls out of what the model writes."""
        return False

    def reasons(self) -> bool:
        """Whether the engine returns the model's reasoning apart from its answer."""
        return False

    def schedules_by_priority(self) -> bool:
        """Whether the engine orders its queue by a request's `priority` (sharing/classes.py)."""
        return False

    def command(self, alias: str, listen: Listen, key: str) -> EngineCommand:
        """The command line for an engine serving `model` for the model alias `alias`,
        listening where `listen` says; `key`, the internal key it must require on every path
        and that the gateway sends."""
        raise NotImplementedError
