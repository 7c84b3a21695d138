"""Fault injection across replicas (FAULT-INJECTION ENGINES): what the client sees and where
the traffic goes when a replica refuses connections, answers 503, hangs, dies mid-stream or is
slow; all replicas down; backpressure; reload under load; and the metrics of all that."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from tests.conftest import MASTER_KEY
from tests.support.fault_engine import EngineLog, fault_engine
from tests.support.servers import free_port, serve_app
from tram.app import create_app
from tram.config import Settings, parse_config

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
USER = [{"role": "user", "content": "hi"}]
CLOSED = "http://127.0.0.1:9/v1"  # nothing listens on the discard port: connection refused


@pytest.fixture(scope="module")
def fleet() -> Iterator[list[tuple[str, EngineLog]]]:
    with ExitStack() as stack:
        engines = []
        for _ in range(3):
            log = EngineLog()
            engines.append((stack.enter_context(serve_app(fault_engine(log))) + "/v1", log))
        yield engines


@pytest.fixture(autouse=True)
def clear_logs(fleet: list[tuple[str, EngineLog]]) -> None:
    for _, log in fleet:
        for items in (log.received, log.headers, log.cancelled, log.finished):
            items.clear()


@contextmanager
def gateway(tmp_path: Path, upstreams: list[dict[str, Any]], sharing: Any = None,
            **model: Any) -> Iterator[str]:
    data: dict[str, Any] = {"models": [{"name": "m", "upstreams": upstreams,
                                        "timeouts": {"first_byte": 1.0, "idle": 1.0,
                                                     "total": 30}, **model}]}
    if sharing is not None:
        data["sharing"] = sharing
    path = tmp_path / "tram.yaml"
    path.write_text(yaml.safe_dump(data))
    settings = Settings(master_key=MASTER_KEY, master_key_source="test", config_path=path,
                        data_dir=tmp_path / "data")
    with serve_app(create_app(settings, parse_config(data, str(path)))) as url:
        yield url


def chat(url: str, **body: Any) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", headers=AUTH, timeout=30,
                      json={"model": "m", "messages": USER, **body})


def metric(url: str, name: str, **labels: str) -> float:
    text = httpx.get(url + "/metrics", headers=AUTH).text
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_refused_connection_is_retried_on_another_replica_then_ejected(
        tmp_path: Path, fleet: list[tuple[str, EngineLog]]) -> None:
    (good, log), = fleet[:1]
    upstreams = [{"url": CLOSED, "served_name": "echo"}, {"url": good, "served_name": "echo"}]
    # Least outstanding spreads the same prompt over both (cache_aware would send it to one).
    with gateway(tmp_path, upstreams, health={"eject_after": 2, "eject_seconds": 60,
                                              "probe_interval": 60},
                 routing={"policy": "least_outstanding"}) as url:
        answers = [chat(url) for _ in range(12)]
        assert {a.status_code for a in answers} == {200}
        assert len(log.received) == 12
        retries = metric(url, "tram_retries_total", model="m")
        assert 1 <= retries <= 2  # until two failures opened the dead replica's circuit
        assert metric(url, "tram_circuit_opened_total", replica=CLOSED) == 1
        assert metric(url, "tram_replica_healthy", replica=CLOSED) == 0
        assert metric(url, "tram_replica_healthy", replica=good) == 1


def test_503_is_retried_elsewhere_but_a_4xx_is_not(tmp_path: Path,
                                                   fleet: list[tuple[str, EngineLog]]) -> None:
    (busy, busy_log), (good, good_log) = fleet[:2]
    upstreams = [{"url": busy, "served_name": "error-503", "weight": 1000},
                 {"url": good, "served_name": "echo"}]
    with gateway(tmp_path, upstreams, routing={"policy": "round_robin"}) as url:
        assert chat(url).status_code == 200
    assert len(busy_log.received) == 1 and len(good_log.received) == 1

    upstreams = [{"url": busy, "served_name": "error-400"}, {"url": good, "served_name": "echo"}]
    with gateway(tmp_path, upstreams, routing={"policy": "round_robin"}) as url:
        refused = chat(url)
    assert refused.status_code == 400 and refused.json()["error"]["message"] == "engine says 400"
    assert len(good_log.received) == 1  # the 4xx was not retried on the good replica


def test_hang_before_first_byte_is_504_without_retry(tmp_path: Path,
                                                     fleet: list[tuple[str, EngineLog]]) -> None:
    (hang, _), (good, good_log) = fleet[:2]
    upstreams = [{"url": hang, "served_name": "hang", "weight": 1000},
                 {"url": good, "served_name": "echo"}]
    with gateway(tmp_path, upstreams, routing={"policy": "round_robin"}) as url:
        started = time.monotonic()
        answer = chat(url, stream=True)
    assert answer.status_code == 504 and "first_byte" in answer.json()["error"]["message"]
    assert time.monotonic() - started < 5
    assert good_log.received == []


def test_death_mid_stream_is_never_retried(tmp_path: Path,
                                           fleet: list[tuple[str, EngineLog]]) -> None:
    (cut, _), (good, good_log) = fleet[:2]
    upstreams = [{"url": cut, "served_name": "cut-stream", "weight": 1000},
                 {"url": good, "served_name": "stream"}]
    with gateway(tmp_path, upstreams, routing={"policy": "round_robin"}) as url:
        answer = chat(url, stream=True)
    events = [line[6:] for line in answer.text.splitlines() if line.startswith("data: ")]
    assert orjson.loads(events[-2])["error"]["code"] == "bad_gateway"
    assert events[-1] == "[DONE]"
    assert good_log.received == []


def test_slow_replica_does_not_collect_a_queue(tmp_path: Path,
                                               fleet: list[tuple[str, EngineLog]]) -> None:
    (slow, slow_log), (fast, fast_log) = fleet[:2]
    upstreams = [{"url": slow, "served_name": "slow-json"}, {"url": fast, "served_name": "echo"}]
    with gateway(tmp_path, upstreams, routing={"policy": "least_outstanding"}) as url:
        # Occupy the slow replica (a request that lands on the fast one just returns).
        deadline = time.monotonic() + 10
        while not slow_log.received:
            assert time.monotonic() < deadline
            threading.Thread(target=lambda: chat(url), daemon=True).start()
            time.sleep(0.2)
        before = len(fast_log.received)
        answers = [chat(url) for _ in range(6)]
    assert {a.status_code for a in answers} == {200}
    # While the slow replica holds a request, least-outstanding sends the rest elsewhere.
    assert len(slow_log.received) == 1
    assert len(fast_log.received) - before == 6


def test_all_replicas_down_is_a_fast_503(tmp_path: Path) -> None:
    upstreams = [{"url": CLOSED, "served_name": "a"}, {"url": "http://127.0.0.1:7/v1"}]
    with gateway(tmp_path, upstreams, health={"eject_after": 1, "eject_seconds": 60}) as url:
        first = chat(url)
        assert first.status_code == 502
        started = time.monotonic()
        later = chat(url)
    assert time.monotonic() - started < 0.5
    assert later.status_code == 503
    assert later.json()["error"]["code"] == "engine_unavailable"
    assert "No engine for model 'm'" in later.json()["error"]["message"]


def test_active_probes_eject_and_restore_a_replica_without_traffic(tmp_path: Path) -> None:
    port = free_port()
    upstreams = [{"url": f"http://127.0.0.1:{port}/v1", "served_name": "echo"}]
    health = {"probe_interval": 0.2, "probe_timeout": 0.5, "unhealthy_after": 1}
    with gateway(tmp_path, upstreams, health=health) as url:
        replica = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + 5
        while metric(url, "tram_replica_healthy", replica=replica) != 0:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert chat(url).status_code == 503  # known down: no connection attempt
        with serve_app(fault_engine(EngineLog()), port=port):
            deadline = time.monotonic() + 5
            while metric(url, "tram_replica_healthy", replica=replica) != 1:
                assert time.monotonic() < deadline
                time.sleep(0.1)
            assert chat(url).status_code == 200


def test_max_in_flight_refuses_with_429_when_the_fair_queue_is_off(
        tmp_path: Path, fleet: list[tuple[str, EngineLog]]) -> None:
    (slow, _), = fleet[:1]
    # With the queue on (the default) the second request waits: tests/sharing/.
    with gateway(tmp_path, [{"url": slow, "served_name": "slow-json"}], max_in_flight=1,
                 sharing={"queue": {"enabled": False}}) as url:
        threading.Thread(target=lambda: chat(url), daemon=True).start()
        time.sleep(0.3)
        refused = chat(url)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["code"] == "model_overloaded"
        assert metric(url, "tram_rejected_total", reason="max_in_flight") == 1
        assert metric(url, "tram_replica_in_flight", replica=slow) == 1  # the slow one


def test_reload_switches_new_requests_and_keeps_streams_in_flight(
        tmp_path: Path, fleet: list[tuple[str, EngineLog]]) -> None:
    (old, old_log), (new, new_log) = fleet[:2]
    with gateway(tmp_path, [{"url": old, "served_name": "slow-stream"}]) as url:
        events: list[str] = []

        def stream() -> None:
            with httpx.stream("POST", url + "/v1/chat/completions", timeout=30,
                              headers={**AUTH, "X-Request-ID": "reload-stream"},
                              json={"model": "m", "messages": USER, "stream": True,
                                    "chunks": 30}) as response:
                events.extend(line for line in response.iter_lines() if line.startswith("data: "))

        reader = threading.Thread(target=stream)
        reader.start()
        time.sleep(0.4)
        (tmp_path / "tram.yaml").write_text(yaml.safe_dump({"models": [
            {"name": "m", "upstreams": [{"url": new, "served_name": "echo"}]}]}))
        reloaded = httpx.post(url + "/admin/reload", headers=AUTH)
        assert reloaded.status_code == 200 and reloaded.json()["models"] == ["m"]
        assert chat(url).status_code == 200
        reader.join(30)
        (tmp_path / "tram.yaml").write_text("models: [{name: m, upstreams: [{url: nope}]}]\n")
        refused = httpx.post(url + "/admin/reload", headers=AUTH)
        assert chat(url).status_code == 200  # the bad config was not applied
    assert len(new_log.received) == 2
    assert "reload-stream" in old_log.finished and "reload-stream" not in old_log.cancelled
    assert events[-1] == "data: [DONE]" and len(events) == 32  # 30 chunks, finish, [DONE]
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_config"


def test_metrics_need_the_master_key_and_count_requests(tmp_path: Path,
                                                        fleet: list[tuple[str, EngineLog]]) -> None:
    (good, _), = fleet[:1]
    with gateway(tmp_path, [{"url": good, "served_name": "echo"}]) as url:
        for _ in range(3):
            chat(url)
        chat(url, max_tokens=0)
        assert httpx.get(url + "/metrics").status_code == 401
        assert metric(url, "tram_requests_total", model="m", status="200") == 3
        assert metric(url, "tram_requests_total", model="m", status="400") == 1
        assert metric(url, "tram_tokens_total", model="m", direction="prompt") == 21
        assert metric(url, "tram_tokens_total", model="m", direction="completion") == 6
        assert metric(url, "tram_request_duration_seconds_count", model="m") == 4
