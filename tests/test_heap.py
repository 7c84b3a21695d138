"""A gateway process settles its garbage collector once its app has started (server/heap.py):
`tram serve` (one process or its workers) and `tram up` build their app with
`settle_heap=True`; an app built otherwise (the tests', the benchmarks') leaves the process's
collector alone. Frozen objects are still freed by reference counting: a reload frees the
model pools it replaces."""

from __future__ import annotations

import argparse
import gc
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tram.cli
from tests.conftest import MASTER_KEY
from tests.support.servers import serve_app
from tram.api.admin import reload_config
from tram.app import create_app
from tram.config import Settings, load_config
from tram.server import heap

CONFIG = ("models:\n  - name: m\n    upstreams: [{url: 'http://127.0.0.1:9/v1'}, "
          "{url: 'http://127.0.0.1:8/v1'}]\n")


@pytest.fixture
def restored_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "tram.yaml").write_text(CONFIG)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRAM_MASTER_KEY", MASTER_KEY)
    monkeypatch.setenv("TRAM_CONFIG", str(tmp_path / "tram.yaml"))
    return tmp_path / "tram.yaml"


def _settings(path: Path) -> Settings:
    return Settings(master_key=MASTER_KEY, master_key_source="test", config_path=path,
                    data_dir=path.parent / "data")


@pytest.mark.usefixtures("restored_collector")
def test_an_app_settles_the_heap_at_the_end_of_its_start_up_when_asked(config_file: Path) -> None:
    frozen = gc.get_freeze_count()
    with serve_app(create_app(_settings(config_file), load_config(config_file))):
        assert gc.get_freeze_count() == frozen
        assert gc.get_threshold()[0] != heap.YOUNG_THRESHOLD
    settled = create_app(_settings(config_file), load_config(config_file), settle_heap=True)
    assert gc.get_freeze_count() == frozen  # built, not started yet
    with serve_app(settled):
        assert gc.get_freeze_count() > frozen
        assert gc.get_threshold()[0] == heap.YOUNG_THRESHOLD


def test_tram_serve_and_its_workers_build_apps_that_settle(
        config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[Any] = []

    class Server:
        def __init__(self, config: Any) -> None:
            served.append(config.app)

        def run(self) -> None:
            pass

    monkeypatch.setattr(tram.cli, "_graceful_server_class", lambda: Server)
    # The process's logging is the test run's: not set up again here.
    monkeypatch.setattr(tram.cli, "setup_logging", lambda *args, **kwargs: None)
    args = argparse.Namespace(config=config_file, host="127.0.0.1", port=4999, workers=1,
                              log_level="warning", log_format="text")
    assert tram.cli._serve(args) == 0
    assert served[0].settles_heap
    worker_app = tram.cli.app_factory()
    assert getattr(worker_app, "settles_heap", False)


@pytest.mark.usefixtures("restored_collector")
def test_a_reload_in_a_settled_process_frees_the_models_it_replaces(config_file: Path) -> None:
    # What start-up built is frozen: were the model pools it made cyclic, a reload that drops
    # them would leak them for good.
    state = create_app(_settings(config_file), load_config(config_file)).state
    heap.settle()
    replaced = []
    for _ in range(3):
        replaced.append(weakref.ref(state.registry.get("m")))
        reload_config(state)
    gc.collect()
    assert [pool() for pool in replaced] == [None, None, None]
    assert state.registry.get("m") is not None
