"""`tram clients`: each client's set-up has the fields that client reads, in the format it
parses, holds no key, and is what the gateway (or else the config) says about the model.
tests/agents runs the real CLIs on these files against `tram up`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import serve_app
from tram.clients.setups import CLIENTS, build_setups
from tram.clients.target import Target, resolve_target
from tram.config import Settings

KEY = "sk-clients-test-0123456789"


def _files(target: Target, lang: str = "en") -> dict[str, str]:
    return {file.folder_path: file.content
            for setup in build_setups(target, lang) for file in setup.files}


def _target(window: int | None = 8192, model: str = "qwen-text") -> Target:
    return Target("http://127.0.0.1:4000", model, window)


def test_codex_config_is_the_toml_codex_reads() -> None:
    files = _files(_target())
    config = tomllib.loads(files["codex/config.toml"])
    assert config["model"] == "qwen-text" and config["model_provider"] == "tram"
    assert config["model_context_window"] == 8192
    assert config["model_providers"]["tram"] == {
        "name": "Trạm", "base_url": "http://127.0.0.1:4000/v1", "env_key": "TRAM_API_KEY",
        "wire_api": "responses"}
    # Function tools only (what the bridge runs today), and nothing phoned home.
    assert config["web_search"] == "disabled" and config["agents"] == {"enabled": False}
    assert config["analytics"] == {"enabled": False}
    assert config["features"] == {"plugins": False}  # no curated-plugin sync at start
    assert config["check_for_update_on_startup"] is False
    # The Vietnamese file differs in its comments only.
    assert tomllib.loads(_files(_target(), "vi")["codex/config.toml"]) == config
    assert "Responses API của Trạm" in _files(_target(), "vi")["codex/config.toml"]


def test_names_that_need_quoting_stay_toml() -> None:
    odd = Target('http://gw.example:4000', 'qwen "text" \\ Việt', 32768, key_env="MY_KEY")
    config = tomllib.loads(_files(odd)["codex/config.toml"])
    assert config["model"] == 'qwen "text" \\ Việt'
    assert config["model_providers"]["tram"]["env_key"] == "MY_KEY"


@pytest.mark.parametrize(("window", "context", "output"), [
    (32768, "32768", "4096"), (131072, "131072", "16384"), (16384, "16384", "2048"),
    (8192, None, "1024"), (None, None, None)])
def test_claude_settings_name_the_window_only_where_claude_code_can_use_it(
        window: int | None, context: str | None, output: str | None) -> None:
    settings = json.loads(_files(_target(window))["claude/settings.json"])
    env = settings["env"]
    assert env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:4000"  # Claude Code adds /v1/messages
    assert settings["apiKeyHelper"] == "printenv TRAM_API_KEY" and settings["model"] == "qwen-text"
    for tier in ("MODEL", "DEFAULT_OPUS_MODEL", "DEFAULT_SONNET_MODEL", "DEFAULT_HAIKU_MODEL"):
        assert env[f"ANTHROPIC_{tier}"] == "qwen-text"
    assert env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    assert env.get("CLAUDE_CODE_MAX_CONTEXT_TOKENS") == context
    assert env.get("CLAUDE_CODE_MAX_OUTPUT_TOKENS") == output


def test_qwen_code_settings() -> None:
    settings = json.loads(_files(_target(32768))["qwen/settings.json"])
    assert settings["modelProviders"]["openai"] == [{
        "id": "qwen-text", "name": "qwen-text (Trạm)", "envKey": "TRAM_API_KEY",
        "baseUrl": "http://127.0.0.1:4000/v1",
        "generationConfig": {"contextWindowSize": 32768, "samplingParams": {"max_tokens": 8192}}}]
    assert settings["security"]["auth"]["selectedType"] == "openai"
    assert settings["model"]["name"] == "qwen-text"
    assert settings["telemetry"]["enabled"] is False
    assert settings["privacy"]["usageStatisticsEnabled"] is False
    assert settings["general"]["enableAutoUpdate"] is False


def test_opencode_and_open_webui() -> None:
    files = _files(_target(32768))
    opencode = json.loads(files["opencode/opencode.json"])
    provider = opencode["provider"]["tram"]
    assert provider["npm"] == "@ai-sdk/openai-compatible"
    assert provider["options"] == {"baseURL": "http://127.0.0.1:4000/v1",
                                   "apiKey": "{env:TRAM_API_KEY}"}
    assert provider["models"]["qwen-text"]["limit"]["context"] == 32768
    assert opencode["model"] == "tram/qwen-text" and opencode["autoupdate"] is False
    env = dict(line.split("=", 1) for line in files["open-webui/open-webui.env"].splitlines()
               if line and not line.startswith("#"))
    assert env["OPENAI_API_BASE_URL"] == "http://host.docker.internal:4000/v1"
    assert env["ENABLE_OLLAMA_API"] == "false" and env["OFFLINE_MODE"] == "true"


def test_no_set_up_holds_a_key() -> None:
    settings = Settings(master_key=KEY, master_key_source="test", config_path=None,
                        env={"TRAM_API_KEY": KEY})
    target = resolve_target(settings, url="http://127.0.0.1:9")  # nothing listens there
    assert all(KEY not in text for text in _files(target).values())
    assert {s.name for s in build_setups(target, "en")} == set(CLIENTS)


def _models_app(cards: list[dict[str, Any]]) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = dict(scope["headers"])
        good = headers.get(b"authorization") == f"Bearer {KEY}".encode()
        body = json.dumps({"object": "list", "data": cards} if good else
                          {"error": {"message": "no key"}}).encode()
        await send({"type": "http.response.start", "status": 200 if good else 401,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    return app


def _settings(tmp_path: Path, config: str | None, key: str | None) -> Settings:
    path = None
    if config is not None:
        path = tmp_path / "tram.yaml"
        path.write_text(config)
    return Settings(master_key=key, master_key_source="test", config_path=path, env={})


VLLM_CONFIG = """
server: {host: 0.0.0.0, port: 4100}
models:
  - name: embed
    routes: {chat: "off"}
    upstreams: [{url: "http://127.0.0.1:1/v1"}]
  - name: qwen-text
    engine: {kind: vllm, model: Qwen/Qwen3-8B}
  - name: small
    engine: {kind: llamacpp, model: /m.gguf, context: 2048}
"""


def test_the_target_is_the_gateways_answer_then_the_config(tmp_path: Path) -> None:
    cards = [{"id": "qwen-text", "object": "model", "max_model_len": 40960},
             {"id": "small", "object": "model"}]
    with serve_app(_models_app(cards), tram_server=False) as url:
        asked = resolve_target(_settings(tmp_path, VLLM_CONFIG, KEY), url=url + "/v1")
        assert (asked.url, asked.model, asked.context_window) == (url, "qwen-text", 40960)
        assert asked.source.startswith("gateway")
        # A card without a window: the config's (llama.cpp's context per slot).
        assert resolve_target(_settings(tmp_path, VLLM_CONFIG, KEY), url=url,
                              model="small").context_window == 2048
        # The gateway refuses the key: the config alone (vLLM's preset: 32,768 for Qwen3).
        refused = resolve_target(_settings(tmp_path, VLLM_CONFIG, "sk-wrong"), url=url)
        assert (refused.context_window, refused.source) == (32768, str(tmp_path / "tram.yaml"))
    # No gateway and no URL: the config's own address (0.0.0.0 reached on loopback).
    offline = resolve_target(_settings(tmp_path, VLLM_CONFIG, KEY))
    assert (offline.url, offline.model) == ("http://127.0.0.1:4100", "qwen-text")
    # No tram.yaml: the embedded profile, SmolLM2 with 8,192 tokens per slot.
    embedded = resolve_target(_settings(tmp_path, None, None), url="http://127.0.0.1:9")
    assert (embedded.model, embedded.context_window) == ("qwen-text", 8192)


def _tram(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("TRAM_", "LC_", "LANG", "CODEX_", "CLAUDE_", "QWEN_",
                                 "OPENCODE_"))}
    return subprocess.run([sys.executable, "-m", "tram", "clients", *args], env=base | env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_the_verb_speaks_the_language_asked(tmp_path: Path) -> None:
    url = ["--url", "http://127.0.0.1:9"]
    vietnamese = _tram(*url, env={"LANG": "vi_VN.UTF-8"})
    assert vietnamese.returncode == 0, vietnamese.stderr
    assert vietnamese.stdout.startswith("Tác tử lập trình")
    english = _tram(*url, "--client", "codex", env={"LANG": "C.UTF-8"})
    assert english.stdout.startswith("Coding agents") and "## Claude Code" not in english.stdout
    assert _tram(*url, "--lang", "en", env={"LANG": "vi_VN"}).stdout.startswith("Coding agents")


def test_writing_where_each_client_reads_keeps_what_is_there(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {"HOME": str(home), "CODEX_HOME": str(tmp_path / "codex-home"), "LANG": "C"}
    first = _tram("--url", "http://127.0.0.1:9", "--write", env=env)
    assert first.returncode == 0, first.stderr
    codex = tmp_path / "codex-home" / "config.toml"  # CODEX_HOME honoured
    assert tomllib.loads(codex.read_text())["model_provider"] == "tram"
    for path in (".claude/settings.json", ".qwen/settings.json",
                 ".config/opencode/opencode.json"):
        assert json.loads((home / path).read_text())
    codex.write_text(codex.read_text() + "# mine\n")
    kept = _tram("--url", "http://127.0.0.1:9", "--write", env=env)
    assert "kept" in kept.stderr and codex.read_text().endswith("# mine\n")
    assert "unchanged" in kept.stderr  # the other files were already so
    forced = _tram("--url", "http://127.0.0.1:9", "--write", "--force", env=env)
    assert forced.returncode == 0 and not codex.read_text().endswith("# mine\n")
    assert codex.with_name("config.toml.bak").read_text().endswith("# mine\n")


@pytest.mark.parametrize("guide", ["agents.md", "agents.vi.md"])
def test_the_guide_shows_what_the_verb_writes(guide: str) -> None:
    """docs/agents*.md show each file as `tram clients` writes it for Qwen3's 32K window."""
    from tests.test_docs import DOCS, blocks

    shown = [(language, text) for language, info, text in blocks(DOCS / guide)
             if language in ("toml", "json")]
    files = _files(Target("http://127.0.0.1:4000", "qwen-text", 32768))
    assert [tomllib.loads(t) for lang, t in shown if lang == "toml"] == \
        [tomllib.loads(files["codex/config.toml"])]
    assert [json.loads(t) for lang, t in shown if lang == "json"] == [
        json.loads(files[name]) for name in
        ("claude/settings.json", "qwen/settings.json", "opencode/opencode.json")]
