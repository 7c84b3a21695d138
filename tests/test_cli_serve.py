"""`tram serve` runs the gateway alone, with several workers, in front of running engines."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import MASTER_KEY
from tests.support.fault_engine import EngineLog
from tests.support.servers import clean_env, free_port, start_tram_serve


def test_serve_with_two_workers_answers_and_stops_on_sigterm(
        tmp_path: Path, fault_engine_server: tuple[str, EngineLog]) -> None:
    (tmp_path / "tram.yaml").write_text(
        f"models:\n  - name: qwen-text\n    upstreams: [{{url: '{fault_engine_server[0]}', "
        "served_name: echo}]\n")
    (tmp_path / ".env").write_text(f"LITELLM_MASTER_KEY={MASTER_KEY}\n")
    port = free_port()
    env = clean_env()
    process = subprocess.Popen(
        [sys.executable, "-m", "tram", "serve", "--config", "tram.yaml", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "2"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "tram serve did not start"
            time.sleep(0.1)
        answers = [httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=10,
                              headers={"Authorization": f"Bearer {MASTER_KEY}"},
                              json={"model": "qwen-text", "messages": [{"role": "user", "content": "hi"}]})
                   for _ in range(6)]
        assert {a.status_code for a in answers} == {200}
        assert {a.json()["model"] for a in answers} == {"qwen-text"}
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    assert output.count("Application startup complete") == 2  # two workers
    assert output.count('"path":"/v1/chat/completions"') == 6  # each worker logs its requests


def test_sigterm_lets_a_stream_in_flight_finish(
        tmp_path: Path, fault_engine_server: tuple[str, EngineLog]) -> None:
    engine = fault_engine_server[0]
    process, url = start_tram_serve(tmp_path, f"models: [{{name: m, upstreams: [{{url: '{engine}', "
                                          "served_name: slow-stream}]}]\n")
    events: list[str] = []
    try:
        with httpx.stream("POST", url + "/v1/chat/completions", timeout=30,
                          headers={"Authorization": f"Bearer {MASTER_KEY}"},
                          json={"model": "m", "messages": [{"role": "user", "content": "hi"}],
                                "stream": True, "chunks": 20}) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    events.append(line)
                    if len(events) == 2:
                        process.send_signal(signal.SIGTERM)
                        time.sleep(0.2)
                        try:  # no new connections once shutting down
                            httpx.get(url + "/health", timeout=1)
                            refused = False
                        except httpx.HTTPError:
                            refused = True
    finally:
        process.wait(30)
    assert refused
    assert events[-1] == "data: [DONE]" and len(events) == 22
    assert process.returncode == 0


def test_sighup_reloads_the_config(tmp_path: Path,
                                   fault_engine_server: tuple[str, EngineLog]) -> None:
    engine = fault_engine_server[0]
    process, url = start_tram_serve(tmp_path, f"models: [{{name: m, upstreams: [{{url: '{engine}', "
                                          "served_name: echo}]}]\n")
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    try:
        assert [m["id"] for m in httpx.get(url + "/v1/models", headers=headers).json()["data"]] == ["m"]
        (tmp_path / "tram.yaml").write_text(
            f"models: [{{name: m2, upstreams: [{{url: '{engine}', served_name: echo}}]}}]\n")
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while [m["id"] for m in httpx.get(url + "/v1/models", headers=headers).json()["data"]] != ["m2"]:
            assert time.monotonic() < deadline, "SIGHUP did not reload"
            time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
