"""The engine kinds `tram up` starts, one class each (`base.EngineBase`): its tram.yaml
settings, its command line and what the gateway needs to know of it. Config, launcher and
supervisor ask the kind; nothing else compares kind names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field

from tram.kinds.base import EngineBase, EngineCommand, Listen
from tram.kinds.llamacpp import LlamaCppEngine
from tram.kinds.transformers import TransformersEngine
from tram.kinds.vllm import VLLMEngine

__all__ = ["KINDS", "EngineBase", "EngineCommand", "EngineConfig", "Listen", "kind_for_path",
           "owners_of"]

KINDS: tuple[type[EngineBase], ...] = (LlamaCppEngine, TransformersEngine, VLLMEngine)

# `engine:` in tram.yaml: the kind's own settings, told apart by `kind`.
EngineConfig = Annotated[LlamaCppEngine | TransformersEngine | VLLMEngine,
                         Field(discriminator="kind")]


def _name(kind: type[EngineBase]) -> str:
    return str(kind.model_fields["kind"].annotation.__args__[0])  # type: ignore[union-attr]


def kind_for_path(path: Path) -> str | None:
    """The kind `tram up --model alias=PATH` runs `path` on, if any serves it."""
    return next((_name(kind) for kind in KINDS if kind.serves_path(path)), None)


def owners_of(setting: str) -> list[str]:
    """The kinds that take `setting` (for a config error that says which)."""
    return [_name(kind) for kind in KINDS if setting in kind.model_fields]
