"""Where a coding agent should point: the gateway's URL, the model and its context window.

The gateway's `GET /v1/models` is asked first (the models this key may use, and a context
window where the listing carries one: `context_window`, or vLLM's `max_model_len`); whatever
it cannot say comes from the config `tram up` would run (tram.yaml, else the embedded
profile): `engine.context` for llama.cpp, `engine.max_model_len` or the preset's for vLLM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from tram.config import ConfigError, ModelConfig, Settings, TramConfig, load_config

__all__ = ["DEFAULT_KEY_ENV", "Target", "config_windows", "listed_models", "resolve_target"]

DEFAULT_KEY_ENV = "TRAM_API_KEY"
# The embedded profile (no tram.yaml): its chat model and the context of each of its slots.
_EMBEDDED_CHAT_MODEL = "qwen-text"
_WINDOW_FIELDS = ("context_window", "max_model_len", "context_length")


@dataclass(frozen=True)
class Target:
    """What every client's set-up is written from."""

    url: str  # the gateway's root, e.g. http://127.0.0.1:4000 (OpenAI routes under /v1)
    model: str
    context_window: int | None
    key_env: str = DEFAULT_KEY_ENV
    source: str = "config"  # "gateway" when /v1/models answered, else the config it read

    @property
    def v1(self) -> str:
        return self.url + "/v1"


def _window(model: ModelConfig) -> int | None:
    return model.engine.context_window() if model.engine is not None else None


def config_windows(config: TramConfig | None) -> dict[str, int | None]:
    """Each chat model of the config (in order) and its context window, if the config says;
    None: the embedded profile."""
    if config is None:
        from tram.engines.up import EMBEDDED_CONTEXT

        return {_EMBEDDED_CHAT_MODEL: EMBEDDED_CONTEXT}
    return {model.name: _window(model) for model in config.models
            if model.routes.get("chat") != "off"}


def listed_models(url: str, key: str | None, timeout: float = 3.0) -> list[dict[str, Any]] | None:
    """The gateway's model cards for `key`, or None when it cannot be asked."""
    if not key:
        return None
    try:
        response = httpx.get(url + "/v1/models", headers={"Authorization": f"Bearer {key}"},
                             timeout=timeout)
        data = response.json().get("data") if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    return [card for card in data if isinstance(card, dict)] if isinstance(data, list) else None


def _default_url(config: TramConfig | None) -> str:
    host, port = (config.server.host, config.server.port) if config else ("127.0.0.1", 4000)
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _card_window(card: dict[str, Any]) -> int | None:
    for name in _WINDOW_FIELDS:
        value = card.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _load(settings: Settings) -> tuple[TramConfig | None, str]:
    if settings.config_path is None:
        return None, "embedded profile"
    try:
        return load_config(settings.config_path, settings.env), str(settings.config_path)
    except (ConfigError, OSError):
        return None, f"embedded profile ({settings.config_path} unreadable)"


def _pick(wanted: str | None, available: list[str]) -> str:
    if wanted:
        return wanted
    if _EMBEDDED_CHAT_MODEL in available or not available:
        return _EMBEDDED_CHAT_MODEL
    return available[0]


def resolve_target(settings: Settings, *, url: str | None = None, model: str | None = None,
                   context_window: int | None = None, key_env: str = DEFAULT_KEY_ENV,
                   key: str | None = None) -> Target:
    """The target from what was asked, the gateway's answer and the config, in that order."""
    config, where = _load(settings)
    windows = config_windows(config)
    root = (url or _default_url(config)).rstrip("/").removesuffix("/v1")
    cards = listed_models(root, key or settings.env.get(key_env) or settings.master_key)
    if cards is not None:
        by_name = {str(card.get("id")): card for card in cards}
        chosen = _pick(model, [name for name in by_name if name in windows] or list(by_name))
        window = context_window or _card_window(by_name.get(chosen, {})) or windows.get(chosen)
        return Target(root, chosen, window, key_env, source=f"gateway {root}/v1/models + {where}")
    chosen = _pick(model, list(windows))
    return Target(root, chosen, context_window or windows.get(chosen), key_env, source=where)
