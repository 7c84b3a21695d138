"""A gateway killed with SIGKILL under load: every answered request is recorded, the requests
that were in flight are counted, logged and recorded as `gateway_interrupted`, nothing twice."""

from __future__ import annotations

import itertools
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.conftest import MASTER_KEY
from tests.support.fault_engine import EngineLog
from tests.support.servers import clean_env, free_port, wait_healthy

CONCURRENCY = 12


@contextmanager
def _tram_serve(folder: Path, env: dict[str, str],
                log: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    with log.open("ab") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "tram", "serve", "--config", "tram.yaml", "--host",
             "127.0.0.1", "--port", str(port)], cwd=folder, env=env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, server, log=log)
        yield url, server
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            server.wait(30)


def test_kill_9_under_load_loses_only_the_in_flight_requests_and_says_how_many(
        tmp_path: Path, fault_engine_server: tuple[str, EngineLog]) -> None:
    (tmp_path / "tram.yaml").write_text(
        f"models:\n  - name: qwen-text\n    upstreams: [{{url: '{fault_engine_server[0]}', "
        "served_name: delay-json}]\n")
    env = clean_env(TRAM_MASTER_KEY=MASTER_KEY, TRAM_DATA_DIR=str(tmp_path / "data"))
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    answered: list[str] = []
    failed: list[str] = []
    ids = itertools.count()
    stop = threading.Event()

    def client(url: str) -> None:
        with httpx.Client(timeout=10) as http:
            while not stop.is_set():
                rid = f"crash-{next(ids)}"
                try:
                    response = http.post(url + "/v1/chat/completions",
                                         headers={"Authorization": f"Bearer {MASTER_KEY}",
                                                  "X-Request-ID": rid},
                                         json={"model": "qwen-text", "delay": 0.15,
                                               "messages": [{"role": "user", "content": "hi"}]})
                    assert response.status_code == 200, response.text
                    answered.append(rid)
                except httpx.TransportError:
                    failed.append(rid)
                    return  # the gateway is gone

    with _tram_serve(tmp_path, env, first_log) as (url, server):
        clients = [threading.Thread(target=client, args=(url,)) for _ in range(CONCURRENCY)]
        for thread in clients:
            thread.start()
        time.sleep(1.5)
        server.send_signal(signal.SIGKILL)
        server.wait(10)
        for thread in clients:
            thread.join(20)
        stop.set()
    assert len(answered) > 20 and 1 <= len(failed) <= CONCURRENCY

    with _tram_serve(tmp_path, env, second_log):
        deadline = time.monotonic() + 20
        while "requests in flight" not in second_log.read_text():
            assert time.monotonic() < deadline, second_log.read_text()
            time.sleep(0.1)
        time.sleep(0.5)  # the rows are written right after the line is logged

    with sqlite3.connect(tmp_path / "data" / "tram.db") as db:
        rows = db.execute("SELECT request_id, status, error_code, prompt_tokens "
                          "FROM usage_events").fetchall()
    by_id: dict[str, list[tuple[int, str | None, int | None]]] = {}
    for request_id, status, error_code, prompt_tokens in rows:
        by_id.setdefault(request_id, []).append((status, error_code, prompt_tokens))
    assert all(len(found) == 1 for found in by_id.values())  # nothing stored twice
    # Every answered request was recorded with the engine's counts...
    assert all(by_id[rid] == [(200, None, 7)] for rid in answered)
    # ...and the ones in flight at the kill are recorded as interrupted: at most the number of
    # requests in flight, the same number the restarted gateway logged.
    interrupted = [rid for rid, found in by_id.items() if found[0][1] == "gateway_interrupted"]
    assert 1 <= len(interrupted) <= CONCURRENCY
    assert set(interrupted) <= set(failed)
    assert len(rows) == len(answered) + len(interrupted)
    logged = next(line for line in second_log.read_text().splitlines()
                  if "requests in flight" in line)
    assert f"died with {len(interrupted)} requests in flight" in logged
    # The recovered journal is gone; the second gateway removed its own at its clean stop.
    assert not list((tmp_path / "data" / "journal").glob("*.journal"))
