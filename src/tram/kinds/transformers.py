"""Trạm's own server on transformers (engines/hf_serve.py) for a local checkpoint folder: vision
checkpoints on CPU, or on a GPU when torch sees one."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

from tram.errors import ConfigError
from tram.kinds.base import EngineBase, EngineCommand, Listen
from tram.kinds.guard import KEY_VARIABLE

__all__ = ["TransformersEngine"]


class TransformersEngine(EngineBase):
    kind: Literal["transformers"]

    @classmethod
    def serves_path(cls, path: Path) -> bool:
        return path.is_dir() and (path / "config.json").is_file()

    def command(self, alias: str, listen: Listen, key: str) -> EngineCommand:
        return _transformers(self, listen, key)


def _transformers(engine: TransformersEngine, listen: Listen, key: str) -> EngineCommand:
    """Trạm's server on transformers (engines/hf_serve.py) for one local checkpoint (which is
    then its model name)."""
    model = Path(engine.model)
    if not (model / "config.json").is_file():
        raise ConfigError(f"engine.model: {model} is not a Hugging Face checkpoint folder "
                          "(no config.json)")
    try:
        import transformers  # noqa: F401  (only checks that the engine's packages are there)
    except ImportError:
        raise ConfigError("engine.kind transformers needs the engine extras: "
                          "pip install 'tram-llm[transformers]'") from None
    # `auto`: the GPU when torch sees one (CUDA_VISIBLE_DEVICES from `gpus`), else the CPU.
    where = ["--uds", str(listen.socket)] if listen.socket else ["--port", str(listen.port)]
    argv = [sys.executable, "-m", "tram.engines.hf_serve", str(model), *where,
            "--device", "auto", *engine.args]
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
           KEY_VARIABLE: key}
    if engine.gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(gpu) for gpu in engine.gpus)
    if engine.threads:
        env["OMP_NUM_THREADS"] = str(engine.threads)
    return EngineCommand(argv, str(model), env=env)
