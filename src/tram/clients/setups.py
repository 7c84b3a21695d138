"""Each coding agent's or chat UI's set-up for a Trạm gateway, as the files it reads.

Nothing here holds a key: every client reads it from an environment variable (`TRAM_API_KEY`
unless told otherwise), by its own mechanism (Codex `env_key`, Claude Code `apiKeyHelper`,
Qwen Code `envKey`, opencode `{env:…}`, Open WebUI's `-e`). Telemetry, update checks and the
clients' hosted extras are turned off with each client's documented switch, so a client that
points at Trạm talks to Trạm alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from tram.clients.target import Target
from tram.clients.texts import say

__all__ = ["CLAUDE_MIN_WINDOW", "CLIENTS", "ClientSetup", "SetupFile", "build_setups"]

CLIENTS = ("codex", "claude", "qwen", "opencode", "openwebui")
# Below this window Claude Code, which estimates its own first turn (system prompt and tools)
# at ~12K tokens, would refuse every prompt locally ("Prompt is too long") once told the window.
CLAUDE_MIN_WINDOW = 16384


@dataclass(frozen=True)
class SetupFile:
    """One file of a set-up: where the client reads it from by default (None: it has no file
    of its own) and where it goes under `tram clients --write DIR`."""

    home_path: str | None
    folder_path: str
    content: str


@dataclass(frozen=True)
class ClientSetup:
    name: str
    title: str
    files: tuple[SetupFile, ...]
    # Environment variable → a path under DIR, for a set-up written to a folder.
    folder_env: dict[str, str] = field(default_factory=dict)
    try_command: str = ""
    notes: tuple[str, ...] = ()


def _json(value: object) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def _toml_string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a TOML basic string is JSON's, for these


def codex(target: Target, lang: str) -> ClientSetup:
    """Codex CLI (`@openai/codex`): a model provider on the Responses API."""
    lines = [
        f"# {say(lang, 'codex_head', url=target.v1, model=target.model)}",
        f"# {say(lang, 'key_from_env', var=target.key_env)}",
        f"model = {_toml_string(target.model)}",
        'model_provider = "tram"',
    ]
    if target.context_window:
        lines.append(f"model_context_window = {target.context_window}")
    lines += [
        "check_for_update_on_startup = false",
        f"# {say(lang, 'codex_tools')}",
        'web_search = "disabled"',
        "",
        "[agents]",
        "enabled = false",
        "",
        f"# {say(lang, 'codex_plugins')}",
        "[features]",
        "plugins = false",
        "",
        "[analytics]",
        "enabled = false",
        "",
        "[feedback]",
        "enabled = false",
        "",
        "[model_providers.tram]",
        'name = "Trạm"',
        f"base_url = {_toml_string(target.v1)}",
        f"env_key = {_toml_string(target.key_env)}",
        'wire_api = "responses"',
    ]
    return ClientSetup(
        "codex", "Codex CLI",
        (SetupFile("~/.codex/config.toml", "codex/config.toml", "\n".join(lines) + "\n"),),
        folder_env={"CODEX_HOME": "codex"},
        try_command="codex exec --skip-git-repo-check 'Say hello'",
        notes=(say(lang, "codex_metadata"),))


def claude_settings(target: Target) -> dict[str, object]:
    env = {
        "ANTHROPIC_BASE_URL": target.url,  # Claude Code adds /v1/messages itself
        "ANTHROPIC_MODEL": target.model,
        # Every tier and the sub-agents on the same model: Trạm serves no Claude model ids.
        "ANTHROPIC_DEFAULT_OPUS_MODEL": target.model,
        "ANTHROPIC_DEFAULT_SONNET_MODEL": target.model,
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": target.model,
        "CLAUDE_CODE_SUBAGENT_MODEL": target.model,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_AUTOUPDATER": "1",
    }
    window = target.context_window
    if window:
        # Claude Code asks for 32,000 output tokens and keeps them out of the window it
        # compacts against: an eighth of the window leaves room for its ~12K-token prompt.
        env["CLAUDE_CODE_MAX_OUTPUT_TOKENS"] = str(min(32000, max(1024, window // 8)))
        if window >= CLAUDE_MIN_WINDOW:
            env["CLAUDE_CODE_MAX_CONTEXT_TOKENS"] = str(window)
    return {"env": env, "apiKeyHelper": f"printenv {target.key_env}", "model": target.model}


def claude(target: Target, lang: str) -> ClientSetup:
    """Claude Code (`@anthropic-ai/claude-code`): Anthropic Messages at the gateway's root."""
    notes = [say(lang, "claude_key", var=target.key_env)]
    window = target.context_window
    if window:
        notes.append(say(lang, "claude_window" if window >= CLAUDE_MIN_WINDOW else
                         "claude_small_window", window=window, least=CLAUDE_MIN_WINDOW))
    return ClientSetup(
        "claude", "Claude Code",
        (SetupFile("~/.claude/settings.json", "claude/settings.json",
                   _json(claude_settings(target))),),
        folder_env={"CLAUDE_CONFIG_DIR": "claude"},
        try_command="claude -p 'Say hello'", notes=tuple(notes))


def qwen_settings(target: Target) -> dict[str, object]:
    generation: dict[str, object] = {}
    if target.context_window:
        generation["contextWindowSize"] = target.context_window
        # An explicit cap: without one Qwen Code retries a cut answer with 64K tokens or
        # more, which an engine whose window is smaller refuses.
        generation["samplingParams"] = {"max_tokens": max(256, target.context_window // 4)}
    provider: dict[str, object] = {"id": target.model, "name": f"{target.model} (Trạm)",
                                   "envKey": target.key_env, "baseUrl": target.v1}
    if generation:
        provider["generationConfig"] = generation
    return {
        "modelProviders": {"openai": [provider]},
        "security": {"auth": {"selectedType": "openai"}},
        "model": {"name": target.model},
        "privacy": {"usageStatisticsEnabled": False},
        "telemetry": {"enabled": False},
        "general": {"enableAutoUpdate": False},
    }


def qwen(target: Target, lang: str) -> ClientSetup:
    """Qwen Code (`@qwen-code/qwen-code`): an OpenAI-compatible provider on chat completions."""
    return ClientSetup(
        "qwen", "Qwen Code",
        (SetupFile("~/.qwen/settings.json", "qwen/settings.json", _json(qwen_settings(target))),),
        folder_env={"QWEN_HOME": "qwen"},
        try_command="qwen -p 'Say hello'", notes=(say(lang, "qwen_key", var=target.key_env),))


def opencode_config(target: Target) -> dict[str, object]:
    model: dict[str, object] = {"name": target.model}
    if target.context_window:
        # opencode counts output inside the window: a quarter of it for the answer.
        model["limit"] = {"context": target.context_window,
                          "output": max(256, target.context_window // 4)}
    return {
        "$schema": "https://opencode.ai/config.json",
        "provider": {"tram": {
            "npm": "@ai-sdk/openai-compatible",
            "name": "Trạm",
            "options": {"baseURL": target.v1, "apiKey": f"{{env:{target.key_env}}}"},
            "models": {target.model: model},
        }},
        "model": f"tram/{target.model}",
        "autoupdate": False,
        "share": "disabled",
    }


def opencode(target: Target, lang: str) -> ClientSetup:
    """opencode: the AI SDK's OpenAI-compatible provider."""
    return ClientSetup(
        "opencode", "opencode",
        (SetupFile("~/.config/opencode/opencode.json", "opencode/opencode.json",
                   _json(opencode_config(target))),),
        folder_env={"OPENCODE_CONFIG": "opencode/opencode.json"},
        try_command="opencode run 'Say hello'", notes=(say(lang, "opencode_untested"),))


def openwebui(target: Target, lang: str) -> ClientSetup:
    """Open WebUI in Docker: an OpenAI connection to the gateway (from inside the container,
    the host's loopback is host.docker.internal)."""
    inside = target.v1.replace("://127.0.0.1", "://host.docker.internal") \
        .replace("://localhost", "://host.docker.internal")
    env_file = "\n".join([
        f"# {say(lang, 'webui_head', url=target.v1)}",
        f"OPENAI_API_BASE_URL={inside}",
        "ENABLE_OPENAI_API=true",
        "ENABLE_OLLAMA_API=false",
        "OFFLINE_MODE=true",
        "ENABLE_VERSION_UPDATE_CHECK=false",
        "SCARF_NO_ANALYTICS=true",
        "DO_NOT_TRACK=true",
        "ANONYMIZED_TELEMETRY=false",
    ]) + "\n"
    run = ("docker run -d -p 3000:8080 --add-host=host.docker.internal:host-gateway "
           f"--env-file open-webui/open-webui.env -e OPENAI_API_KEY=\"${target.key_env}\" "
           "-v open-webui:/app/backend/data --name open-webui ghcr.io/open-webui/open-webui:main")
    notes = [say(lang, "webui_key", var=target.key_env)]
    if target.context_window:
        notes.append(say(lang, "webui_window", window=target.context_window, model=target.model))
    return ClientSetup("openwebui", "Open WebUI",
                       (SetupFile(None, "open-webui/open-webui.env", env_file),),
                       try_command=run, notes=tuple(notes))


_BUILDERS = {"codex": codex, "claude": claude, "qwen": qwen, "opencode": opencode,
             "openwebui": openwebui}


def build_setups(target: Target, lang: str, names: tuple[str, ...] = CLIENTS) -> list[ClientSetup]:
    return [_BUILDERS[name](target, lang) for name in names]
