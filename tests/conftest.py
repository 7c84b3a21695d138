from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.fault_engine import EngineLog, fault_engine
from tests.support.redis_server import RedisServer
from tests.support.servers import serve_app
from tests.support.tram_up import TramUp
from tram.app import create_app
from tram.config import Settings, parse_config

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


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A real Redis server of the test's own, on a free loopback port."""
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.destroy()
