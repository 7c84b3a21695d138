"""`tram up`: read the config (or the embedded profile), start its engines, then the gateway."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn

from tram.app import create_app
from tram.config import ConfigError, Settings, TramConfig, parse_config, read_yaml
from tram.engines.requant import q8_0_copy
from tram.engines.supervisor import EngineStartError, ManagedEngine, stop_all
from tram.files import cache_dir
from tram.kinds import Listen, kind_for_path
from tram.kinds.llamacpp import (
    LlamaCppEngine,
    default_model_path,
    embedding_model_path,
    install_default_model,
)
from tram.routing.registry import Registry, Replica
from tram.server import gateway_config

__all__ = [
    "EMBEDDED_CONTEXT",
    "EMBEDDED_DESCRIPTION",
    "apply_model_overrides",
    "embedded_profile",
    "load_up_config",
    "run_up",
]

EMBEDDED_DESCRIPTION = (
    "SmolLM2-135M-Instruct on the embedded CPU engine (llama.cpp): a small stand-in, NOT Qwen3-8B"
)


EMBEDDING_ALIAS = "all-minilm-l6-v2"
LLAMACPP = LlamaCppEngine.model_fields["kind"].annotation.__args__[0]  # type: ignore[union-attr]
EMBEDDED_CONTEXT = 8192  # tokens per request: SmolLM2-135M's trained context


def embedded_profile(model_path: Path | None = None) -> dict[str, Any]:
    """The built-in config when there is no tram.yaml: SmolLM2 served as `qwen-text`."""
    if model_path is None:
        published = default_model_path() or install_default_model()
        # Faster for concurrent requests on CPU (see requant); the published file otherwise.
        model_path = q8_0_copy(published, cache_dir() / "models") or published
    models: list[dict[str, Any]] = [{
        "name": "qwen-text",
        "description": EMBEDDED_DESCRIPTION,
        # A 135M model left to itself may ramble to the end of its context.
        "default_max_tokens": 512,
        # Each of the 8 slots holds SmolLM2's whole trained context (8,192 tokens), so that a
        # coding agent's first turn (Codex, Claude Code, Qwen Code: 4-8K tokens of system
        # prompt and tools) fits; bench/RESULTS.md prices it against 4,096.
        "engine": {"kind": LLAMACPP, "model": str(model_path),
                   "served_name": "SmolLM2-135M-Instruct", "context": EMBEDDED_CONTEXT},
    }]
    embedding = embedding_model_path()
    if embedding is not None:
        models.append({
            "name": EMBEDDING_ALIAS,
            "description": "all-MiniLM-L6-v2 sentence embeddings (384 dimensions, mean-pooled, "
                           "normalised) on the embedded CPU engine",
            # An embedding model answers embeddings only: the rest is refused by name.
            "routes": {name: "off" for name in ("chat", "completions", "responses",
                                                "messages", "rerank", "score")},
            "engine": {"kind": LLAMACPP, "model": str(embedding),
                       "served_name": "all-MiniLM-L6-v2", "context": 512, "parallel": 4,
                       "args": ["--embeddings", "--pooling", "mean", "--ubatch-size", "512"]},
        })
    return {"models": models}


def apply_model_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`--model alias=path`: serve a local checkpoint under an alias (replacing one of that name)."""
    models: list[dict[str, Any]] = list(data.get("models") or [])
    for override in overrides:
        alias, sep, raw_path = override.partition("=")
        if not sep or not alias or not raw_path:
            raise ConfigError(f"--model {override!r}: expected ALIAS=PATH, e.g. qwen-text=./model.gguf")
        path = Path(raw_path).expanduser()
        kind = kind_for_path(path)
        if kind is None:
            raise ConfigError(f"--model {override!r}: {path} is neither a .gguf file nor a "
                              "Hugging Face checkpoint folder")
        vision = alias == "qwen-vl" or _is_vision_checkpoint(path)
        entry: dict[str, Any] = {
            "name": alias, "vision": vision,
            "description": f"{path.name} on the embedded CPU engine ({kind})",
            "engine": {"kind": kind, "model": str(path.resolve())},
        }
        if vision:
            # transformers serve would fetch image URLs itself, without any SSRF guard.
            entry["image_fetch"] = "gateway"
        models = [m for m in models if m.get("name") != alias] + [entry]
    return {**data, "models": models}


def _is_vision_checkpoint(path: Path) -> bool:
    """A Hugging Face folder whose config has a vision tower."""
    config = path / "config.json"
    if not config.is_file():
        return False
    try:
        return "vision_config" in json.loads(config.read_text())
    except (OSError, ValueError):
        return False


def _check_port_free(host: str, port: int) -> None:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}; "
                              "choose another with --port") from None


class _Gateway(uvicorn.Server):
    """uvicorn without its own signal handling: the supervisor decides the shutdown order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _progress(message: str) -> None:
    print(f"tram: {message}", file=sys.stderr, flush=True)


def _banner(config: TramConfig, settings: Settings, host: str, port: int,
            engines: list[ManagedEngine]) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    lines = [f"Trạm is up: http://{shown}:{port}/v1   (pages: http://{shown}:{port}/)"]
    width = max([12, *(len(model.name) for model in config.models)])
    for model in config.models:
        served = model.engine.served_name if model.engine and model.engine.served_name else None
        where = next((e.base_url for e in engines if e.name == model.name), None)
        label = model.description or served or model.name
        lines.append(f"  {model.name:<{width}} {label}" + (f"  [engine {where}]" if where else ""))
    lines.append(f"  master key:  {settings.master_key_source}")
    lines.append(f"  try:         curl http://{shown}:{port}/v1/models "
                 "-H \"Authorization: Bearer <master key>\"")
    lines.append("  stop:        Ctrl-C")
    return "\n".join(lines)


def _plan(config: TramConfig, settings: Settings,
          sockets: Path) -> tuple[Registry, list[ManagedEngine]]:
    """The engines to start; each listens on a Unix socket in `sockets` (a folder only this
    user can enter), or on the loopback port the operator set, and requires a key of its own,
    new at every start, that only the gateway knows, on every path but GET /health."""
    registry = Registry.from_models(config.models)
    engines: list[ManagedEngine] = []
    for index, model in enumerate(config.models):
        if model.engine is None:
            if not model.upstreams:
                raise ConfigError(f"models[{model.name}]: neither an engine to launch nor upstreams")
            continue
        listen = Listen(port=model.engine.port) if model.engine.port else \
            Listen(socket=sockets / f"engine-{index}.sock")
        internal_key = "sk-engine-" + secrets.token_urlsafe(24)
        command = model.engine.command(model.name, listen, internal_key)
        replica = Replica(url=listen.url, served_name=command.served_name, api_key=internal_key,
                          socket=str(listen.socket) if listen.socket else None)
        registry.attach(model.name, replica)
        engines.append(ManagedEngine(
            name=model.name, kind=model.engine.kind_name, command=command, listen=listen,
            replica=replica,
            log_path=settings.data_dir / "logs" / f"engine-{model.name}.log",
            startup_timeout=model.engine.startup_timeout,
        ))
    return registry, engines


async def _start_engines(engines: list[ManagedEngine], stop: asyncio.Event) -> int | None:
    """Start the engines one after another, each only once the one before answers its health
    check; an exit code if that failed. One at a time because engines sharing a GPU size their
    memory from what is free when they start: vLLM's profiling misreads a neighbour that is
    still loading, and both may then run out of memory."""
    for engine in engines:
        _progress(f"starting {engine.name} ({engine.kind}) on {engine.listen}")
        await engine.spawn()
        ready: asyncio.Future[None] = asyncio.ensure_future(engine.wait_ready(_progress))
        stopped: asyncio.Future[bool] = asyncio.ensure_future(stop.wait())
        await asyncio.wait([ready, stopped], return_when=asyncio.FIRST_COMPLETED)  # type: ignore[type-var]
        stopped.cancel()
        if not ready.done():
            ready.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ready
            _progress("interrupted while starting")
            return 130
        try:
            ready.result()
        except EngineStartError as exc:
            _progress(str(exc))
            return 1
        _progress(f"{engine.name} is ready")
    return None


async def _serve(settings: Settings, config: TramConfig, registry: Registry, host: str, port: int,
                 engines: list[ManagedEngine], stop: asyncio.Event) -> int:
    for engine in engines:
        engine.watch()
    app = create_app(settings, config, registry=registry, settle_heap=True)
    gateway = _Gateway(gateway_config(app, config.server, guard=app.connection_guard,
                                      host=host, port=port))
    serving = asyncio.ensure_future(gateway.serve())
    while not gateway.started and not serving.done():  # noqa: ASYNC110 - uvicorn sets a flag
        await asyncio.sleep(0.05)
    if serving.done():
        _progress("the gateway failed to start")
        return 1
    print(_banner(config, settings, host, port, engines), flush=True)
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait([serving, stopped], return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    _progress("stopping: gateway first, then engines")
    gateway.should_exit = True
    await serving
    return 0


async def run_up(settings: Settings, config: TramConfig, host: str, port: int) -> int:
    _check_port_free(host, port)
    # Short (a socket path has ~100 bytes), private (mode 0700), gone when Trạm stops.
    with tempfile.TemporaryDirectory(prefix="tram-engines-") as sockets:
        return await _run_up(settings, config, host, port, Path(sockets))


async def _run_up(settings: Settings, config: TramConfig, host: str, port: int,
                  sockets: Path) -> int:
    registry, engines = _plan(config, settings, sockets)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        code = await _start_engines(engines, stop)
        if code is None:
            code = await _serve(settings, config, registry, host, port, engines, stop)
    finally:
        await stop_all(engines)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    _progress("stopped")
    return code


PROFILES = Path(__file__).resolve().parent.parent / "profiles"


def profile_path(name: str) -> Path:
    """A shipped profile (src/tram/profiles/NAME.yaml), e.g. `qwen`: the guide's deployment."""
    path = PROFILES / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PROFILES.glob("*.yaml")))
        raise ConfigError(f"--profile {name}: no such profile (shipped: {known})")
    return path


def load_up_config(settings: Settings, overrides: list[str],
                   profile: str | None = None) -> TramConfig:
    """tram.yaml, or a shipped profile, else the embedded profile; then the --model overrides."""
    if profile is not None:
        path = profile_path(profile)
        data = read_yaml(path) or {}
        source = f"profile {profile} ({path})"
    elif settings.config_path is not None:
        data = read_yaml(settings.config_path) or {}
        source = str(settings.config_path)
    else:
        replaced = any(o.startswith("qwen-text=") for o in overrides)
        data = {"models": []} if replaced else embedded_profile()
        source = "embedded profile"
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping")
    return parse_config(apply_model_overrides(data, overrides), source, settings.env)
