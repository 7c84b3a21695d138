"""Every flag Trạm gives vLLM is accepted by the pinned vLLM's own argument parser and its
checks (`make_arg_parser`, `validate_parsed_serve_args`, as its server's main() runs them):
the shipped qwen profile (Qwen3 and Qwen3-VL presets, GPU fields included) and each preset.
The VL model itself cannot run on the CPU build (its processor needs torchvision); its flags
can still be parsed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson
import pytest

from tests.conftest import MASTER_KEY, require_vllm
from tram.config import Settings
from tram.engines.up import load_up_config
from tram.kinds.vllm import PRESETS, VLLMEngine, vllm_flags

pytestmark = pytest.mark.vllm

PARSE = """
import json, sys
from vllm.utils.argparse_utils import FlexibleArgumentParser
from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
results = []
for argv in json.loads(sys.stdin.read()):
    args = make_arg_parser(FlexibleArgumentParser()).parse_args(argv)
    validate_parsed_serve_args(args)
    results.append({k: v for k, v in vars(args).items()
                    if isinstance(v, (str, int, float, bool, list, dict)) or v is None})
print(json.dumps(results, default=str))
"""


def _parsed(argvs: list[list[str]]) -> list[dict]:
    result = subprocess.run([str(require_vllm()), "-c", PARSE], input=orjson.dumps(argvs),
                            capture_output=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    return list(orjson.loads(result.stdout.splitlines()[-1]))


def test_every_preset_and_the_qwen_profile_parse() -> None:
    settings = Settings(master_key=MASTER_KEY, master_key_source="test", config_path=None)
    profile = [m.engine for m in load_up_config(settings, [], "qwen").models if m.engine]
    engines = [*profile, *(VLLMEngine(kind="vllm", model="Qwen/Qwen3-8B", preset=name)
                           for name in PRESETS)]
    argvs = [["--model", e.model, *vllm_flags(e, e.model, Path("/run/tram/engine.sock"))]
             for e in engines]
    argvs.append(["--model", "Qwen/Qwen3-8B", *vllm_flags(engines[0], "qwen", 8000)])
    parsed = _parsed(argvs)
    text, vision = parsed[0], parsed[1]
    assert text["reasoning_parser"] == "qwen3" and text["tool_call_parser"] == "hermes"
    assert text["enable_auto_tool_choice"] is True and text["uds"] == "/run/tram/engine.sock"
    assert text["middleware"] == ["tram_engine_guard.EngineKeyGuard"]
    assert text["max_model_len"] == 32768 and text["gpu_memory_utilization"] == 0.42
    assert vision["limit_mm_per_prompt"] == {"image": 4, "video": 0}
    assert vision["mm_processor_kwargs"] == {"max_pixels": 1003520}
    assert parsed[-1]["port"] == 8000 and parsed[-1]["host"] == "127.0.0.1"
    # Trạm sends each request's priority: the presets schedule by it ("none" sets nothing).
    assert text["scheduling_policy"] == vision["scheduling_policy"] == "priority"
    by_preset = dict(zip(PRESETS, parsed[len(profile):len(profile) + len(PRESETS)], strict=True))
    assert {name: args["scheduling_policy"] for name, args in by_preset.items()} == \
        {"qwen3": "priority", "qwen3-vl": "priority", "qwen3-vl-thinking": "priority",
         "none": "fcfs"}
