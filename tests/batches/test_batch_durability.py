"""Batches survive what gateways go through: `tram serve` stopped (SIGTERM) or killed (kill -9)
mid-batch and started again, and two `tram serve` processes on one PostgreSQL sharing one
batch. In the end every line has exactly one result; a line whose result was stored before a
kill is never sent to the engine again; only lines in flight in a killed process run twice.
The engine is the fault-injection engine's `delay-json` mode: slow lines, so that some are in
flight when the gateway goes."""

from __future__ import annotations

import collections
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx
import orjson

from tests.conftest import MASTER_KEY
from tests.support.batches import chat_lines, file_lines, start_batch, wait_batch
from tests.support.fault_engine import EngineLog
from tests.support.postgres import Postgres
from tests.support.servers import start_tram_serve

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}


def _config(engine_url: str, database: str | None = None, **batches: object) -> str:
    return orjson.dumps({
        "models": [{"name": "slow", "upstreams": [{"url": engine_url,
                                                   "served_name": "delay-json"}]}],
        "batches": {"lease_seconds": 2, "poll_interval": 0.2, "adjust_interval": 0.05,
                    "max_concurrency": 4, **batches},
        **({"database": {"url": database}} if database else {})}).decode()


def _received(log: EngineLog) -> collections.Counter[str]:
    return collections.Counter(body["messages"][0]["content"] for body in log.received)


def _wait_received(log: EngineLog, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len(log.received) < count:
        assert time.monotonic() < deadline, len(log.received)
        time.sleep(0.02)


def _stop(process: subprocess.Popen[str]) -> str:
    if process.poll() is None:
        process.terminate()
    output, _ = process.communicate(timeout=60)
    return output


def _exactly_one_result_per_line(url: str, batch_id: str, lines: int) -> list[dict]:
    done = wait_batch(url, AUTH, batch_id, timeout=120)
    assert done["status"] == "completed", done
    assert done["request_counts"] == {"total": lines, "completed": lines, "failed": 0}
    output = file_lines(url, AUTH, done["output_file_id"])
    assert sorted(line["custom_id"] for line in output) == sorted(
        f"line-{n}" for n in range(lines))  # each once
    assert done["error_file_id"] is None
    return output


def _lines_in(database: Path, batch_id: str) -> dict[str, tuple[str, str | None]]:
    """custom_id → (state, result), read from the SQLite store as the gateway left it."""
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT custom_id, state, result FROM batch_lines WHERE "
                                  "batch_id = ?", (batch_id,)).fetchall()
    return {custom_id: (state, result) for custom_id, state, result in rows}


def test_a_gateway_stopped_mid_batch_resumes_it_and_runs_no_line_twice(
        tmp_path: Path, fault_engine_server: tuple[str, EngineLog], engine_log: EngineLog) -> None:
    config = _config(fault_engine_server[0], shutdown_grace=10)
    process, url = start_tram_serve(tmp_path, config, MASTER_KEY)
    try:
        batch = start_batch(url, AUTH, chat_lines(30, "slow", delay=0.3))
        _wait_received(engine_log, 6)
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
        stopped = _lines_in(tmp_path / "data" / "tram.db", batch["id"])
        process, url = start_tram_serve(tmp_path, config, MASTER_KEY)
        _exactly_one_result_per_line(url, batch["id"], 30)
    finally:
        _stop(process)
    states = collections.Counter(state for state, _ in stopped.values())
    assert states["running"] == 0  # lines in flight finished, or were handed back
    assert 0 < states["succeeded"] < 30
    assert set(_received(engine_log).values()) == {1}  # no line ran twice
    assert len(engine_log.received) == 30


def test_a_gateway_killed_mid_batch_leaves_exactly_one_result_per_line(
        tmp_path: Path, fault_engine_server: tuple[str, EngineLog], engine_log: EngineLog) -> None:
    config = _config(fault_engine_server[0])
    process, url = start_tram_serve(tmp_path, config, MASTER_KEY)
    try:
        batch = start_batch(url, AUTH, chat_lines(30, "slow", delay=0.5))
        _wait_received(engine_log, 8)
        process.kill()
        process.wait(30)
        killed = _lines_in(tmp_path / "data" / "tram.db", batch["id"])
        ran_before = _received(engine_log)
        process, url = start_tram_serve(tmp_path, config, MASTER_KEY)
        output = _exactly_one_result_per_line(url, batch["id"], 30)
        usage = httpx.get(url + "/admin/usage?by=route", headers=AUTH).json()["data"]
    finally:
        _stop(process)
    stored = {cid: result for cid, (state, result) in killed.items() if state == "succeeded"}
    in_flight = {cid for cid, (state, _) in killed.items() if state == "running"}
    assert stored and in_flight  # the kill came mid-batch, with lines in flight
    kept = {line["custom_id"]: orjson.dumps(line).decode() for line in output}
    for custom_id, result in stored.items():
        assert result is not None and orjson.loads(result) == orjson.loads(kept[custom_id])
    said = {f"line-{n}": f"say {n}" for n in range(30)}
    runs = _received(engine_log)
    twice = {cid for cid in said if runs[said[cid]] == 2}
    assert all(runs[said[cid]] == 1 for cid in stored)  # a stored result is never run again
    assert twice <= in_flight and max(runs.values()) <= 2
    assert all(ran_before[said[cid]] == 1 for cid in in_flight)
    # Every run of a line is a usage row of the key: the dead process's in-flight ones
    # recorded by the next start as gateway_interrupted.
    assert sum(row["requests"] for row in usage) == len(engine_log.received)



def test_two_gateways_on_one_postgres_share_a_batch_without_duplicating_a_line(
        tmp_path: Path, postgres: Postgres, fault_engine_server: tuple[str, EngineLog],
        engine_log: EngineLog) -> None:
    config = _config(fault_engine_server[0], postgres.url, max_concurrency=3)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, url = start_tram_serve(tmp_path / "a", config, MASTER_KEY)
    second, other = start_tram_serve(tmp_path / "b", config, MASTER_KEY)
    try:
        batch = start_batch(url, AUTH, chat_lines(40, "slow", delay=0.2))
        _exactly_one_result_per_line(other, batch["id"], 40)
    finally:
        logs = [_stop(first), _stop(second)]
    assert set(_received(engine_log).values()) == {1} and len(engine_log.received) == 40
    ran = [sum(1 for line in log.splitlines() if batch["id"] in line and "traffic" in line)
           for log in logs]
    assert all(count > 0 for count in ran) and sum(ran) == 40, ran
