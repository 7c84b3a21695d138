"""vLLM engines from tram.yaml: the command each profile builds (unit), and `tram up --profile
qwen` with a FAKE vLLM for what the CPU build cannot show or a real engine will not do on
request (integration): the GPU profile's two engines started in order, gated on health, each
with its own internal key; a crash during start; shutdown. Everything a real engine does is
tested against real vLLM in test_vllm_real.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import MASTER_KEY
from tests.support.tram_up import TramUp, alive, children_of
from tram.config import ConfigError, Settings, parse_config
from tram.engines.up import load_up_config
from tram.kinds import Listen
from tram.kinds.guard import GUARD_DIR
from tram.kinds.transformers import TransformersEngine
from tram.kinds.vllm import VLLMEngine, detect_preset, vllm_command

REPO = Path(__file__).resolve().parents[2]
AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
HELLO = [{"role": "user", "content": "Xin chào"}]


@pytest.fixture
def fake_vllm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A "python" on which TRAM_VLLM_PYTHON points, running the fake for whatever module it is
    asked to; its records go to tmp_path/records."""
    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/sh\ncd {REPO}\nexec {sys.executable} -m tests.support.fake_vllm \"$@\"\n")
    fake.chmod(0o755)
    (tmp_path / "records").mkdir()
    monkeypatch.setenv("TRAM_VLLM_PYTHON", str(fake))
    return fake


def _qwen_profile() -> list:
    settings = Settings(master_key=MASTER_KEY, master_key_source="test", config_path=None)
    return load_up_config(settings, [], "qwen").models


def _flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_the_qwen_profile_builds_the_guides_two_engines(fake_vllm: Path) -> None:
    text, vision = _qwen_profile()
    assert (text.name, vision.name, text.thinking, vision.vision) == \
        ("qwen-text", "qwen-vl", "off", True)
    argv, env = vllm_command(text.engine, "Qwen/Qwen3-8B", Path("/run/e.sock"), "sk-internal")
    assert argv[:5] == [str(fake_vllm), "-m", "vllm.entrypoints.openai.api_server", "--model",
                        "Qwen/Qwen3-8B"]
    assert _flag(argv, "--uds") == "/run/e.sock" and "--port" not in argv
    assert _flag(argv, "--middleware") == "tram_engine_guard.EngineKeyGuard"
    assert _flag(argv, "--served-model-name") == "Qwen/Qwen3-8B"
    assert _flag(argv, "--reasoning-parser") == "qwen3"  # not deepseek_r1
    assert "--enable-auto-tool-choice" in argv and _flag(argv, "--tool-call-parser") == "hermes"
    assert _flag(argv, "--gpu-memory-utilization") == "0.42"
    assert _flag(argv, "--max-model-len") == "32768"
    assert "--enable-prefix-caching" in argv and "--limit-mm-per-prompt" not in argv
    assert env == {"CUDA_VISIBLE_DEVICES": "0", "VLLM_API_KEY": "sk-internal",
                   "TRAM_ENGINE_KEY": "sk-internal", "PYTHONPATH": str(GUARD_DIR)}
    assert "sk-internal" not in argv  # the key is in no command line `ps` shows

    argv, env = vllm_command(vision.engine, "Qwen/Qwen3-VL-8B-Instruct", 8002, "sk-2")
    assert (_flag(argv, "--host"), _flag(argv, "--port")) == ("127.0.0.1", "8002")
    assert "--reasoning-parser" not in argv  # Instruct: no thinking
    assert json.loads(_flag(argv, "--limit-mm-per-prompt")) == {"image": 4, "video": 0}
    assert json.loads(_flag(argv, "--mm-processor-kwargs")) == {"max_pixels": 1003520}
    assert _flag(argv, "--max-model-len") == "32768"  # not the 262K default
    # Two engines on one 80 GB GPU: their shares leave room for the CUDA context.
    assert text.engine.gpu_memory_utilization + vision.engine.gpu_memory_utilization <= 0.9


def test_typed_fields_override_the_preset_and_args_come_last(fake_vllm: Path) -> None:
    engine = VLLMEngine(kind="vllm", model="/models/Qwen3-8B-AWQ", gpus=[2, 3],
                          tensor_parallel_size=2, pipeline_parallel_size=2, max_model_len=8192,
                          prefix_caching=False, reasoning_parser="none", tool_call_parser=None,
                          args=["--quantization", "awq", "--max-model-len", "4096"])
    argv, env = vllm_command(engine, "qwen", 9000, "sk")
    assert _flag(argv, "--tensor-parallel-size") == "2" and _flag(argv, "--pipeline-parallel-size") == "2"
    assert "--no-enable-prefix-caching" in argv
    assert "--reasoning-parser" not in argv and "--tool-call-parser" not in argv
    assert argv[-4:] == ["--quantization", "awq", "--max-model-len", "4096"]  # the last one wins
    assert env["CUDA_VISIBLE_DEVICES"] == "2,3"


@pytest.mark.parametrize(("model", "preset"), [
    ("Qwen/Qwen3-8B", "qwen3"), ("Qwen/Qwen3-0.6B", "qwen3"), ("/srv/models/qwen3-32b/", "qwen3"),
    ("Qwen/Qwen3-VL-8B-Instruct", "qwen3-vl"), ("Qwen/Qwen3-VL-8B-Thinking", "qwen3-vl-thinking"),
    ("meta-llama/Llama-3.1-8B-Instruct", "none"), ("Qwen/Qwen2.5-7B-Instruct", "none"),
])
def test_presets_follow_the_model_name(model: str, preset: str) -> None:
    assert detect_preset(model) == preset


def test_vllm_settings_on_another_kind_are_an_error_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"models\[0\]\.engine: .*gpu_memory_utilization"):
        parse_config({"models": [{"name": "m", "engine": {
            "kind": "llamacpp", "model": "x.gguf", "gpu_memory_utilization": 0.5}}]}, "tram.yaml")
    with pytest.raises(ConfigError, match=r"models\[0\]\.engine\.gpu_memory_utilization"):
        parse_config({"models": [{"name": "m", "engine": {
            "kind": "vllm", "model": "x", "gpu_memory_utilization": 1.5}}]}, "tram.yaml")


def test_transformers_uses_the_gpu_when_there_is_one(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    command = TransformersEngine(kind="transformers", model=str(tmp_path), gpus=[1]).command(
        "m", Listen(port=9000), "sk")
    assert _flag(command.argv, "--device") == "auto"  # cuda when torch sees one, else cpu
    assert command.env["CUDA_VISIBLE_DEVICES"] == "1"


def _records(tmp_path: Path, served: str) -> dict:
    return orjson.loads((tmp_path / "records" / (served.replace("/", "_") + ".json")).read_bytes())


def _received(tmp_path: Path, served: str) -> list[dict]:
    path = tmp_path / "records" / (served.replace("/", "_") + ".requests.jsonl")
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_tram_up_profile_qwen_starts_the_two_engines_in_order(tmp_path: Path,
                                                              fake_vllm: Path) -> None:
    up = TramUp(tmp_path, ["--profile", "qwen"], MASTER_KEY,
                env={"FAKE_VLLM_DIR": str(tmp_path / "records"), "FAKE_VLLM_LOAD_SECONDS": "1.5"})
    try:
        up.wait_up(90)
        engines = children_of(up.process.pid)
        text, vision = (_records(tmp_path, "Qwen/Qwen3-8B"),
                        _records(tmp_path, "Qwen/Qwen3-VL-8B-Instruct"))
        # One after the other: the second starts only once the first answers /health.
        assert vision["started"] >= text["healthy"]
        assert up.text().index("qwen-text is ready") < up.text().index("starting qwen-vl")
        # Internal keys: one per engine, never shown, never in a command line.
        key = text["env"]["TRAM_ENGINE_KEY"]
        assert key and key == text["env"]["VLLM_API_KEY"] != vision["env"]["TRAM_ENGINE_KEY"]
        assert key not in up.text() and all(key not in arg for arg in text["argv"])
        with up.engine_client("qwen-text", timeout=5) as engine:
            assert engine.get("/v1/models").status_code == 401  # not open without it
        answer = httpx.post(up.url + "/v1/chat/completions", headers=AUTH, timeout=30,
                            json={"model": "qwen-vl", "messages": HELLO, "max_tokens": 300})
        assert answer.status_code == 200 and answer.json()["model"] == "qwen-vl"
        assert _received(tmp_path, "Qwen/Qwen3-VL-8B-Instruct")[-1]["model"] == \
            "Qwen/Qwen3-VL-8B-Instruct"
    finally:
        assert up.stop() == 0
    assert not any(alive(pid) for pid in engines)


def test_an_engine_that_crashes_while_starting_stops_the_others(tmp_path: Path,
                                                               fake_vllm: Path) -> None:
    up = TramUp(tmp_path, ["--profile", "qwen"], MASTER_KEY,
                env={"FAKE_VLLM_DIR": str(tmp_path / "records"), "FAKE_VLLM_LOAD_SECONDS": "0.5",
                     "FAKE_VLLM_CRASH": "Qwen/Qwen3-VL-8B-Instruct"})
    assert up.wait_exit(60) == 1
    text = up.text()
    assert "engine for qwen-vl (vllm) exited with code 1 while starting" in text
    assert "CUDA out of memory" in text  # the engine's own last words, shown to the operator
    assert "Trạm is up" not in text
    healthy_text = _records(tmp_path, "Qwen/Qwen3-8B")
    assert "healthy" in healthy_text  # the first had started, and was stopped again
    assert children_of(up.process.pid) == []
