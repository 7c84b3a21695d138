"""`tram up` as a process supervisor: clean stops, no orphans, restarts, clear start failures."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx

from tests.conftest import MASTER_KEY
from tests.support.tram_up import TramUp, alive, children_of

REPO = Path(__file__).resolve().parents[2]
AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
HELLO = {"model": "qwen-text", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}


def wait_until(condition, timeout: float = 30) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_sigterm_stops_gateway_then_engine_and_leaves_no_process(tmp_path: Path) -> None:
    up = TramUp(tmp_path, [], MASTER_KEY)
    up.wait_up()
    engines = children_of(up.process.pid)
    assert len(engines) == 2  # the chat model's llama-server, and the embedding model's
    assert httpx.post(up.url + "/v1/chat/completions", json=HELLO, headers=AUTH,
                      timeout=60).status_code == 200
    assert up.stop() == 0
    assert not any(alive(engine) for engine in engines)
    text = up.text()
    assert text.index("stopping: gateway first, then engines") < text.index("stopped")
    # What a person sees on a first start: the banner after every start-up line, no Alembic
    # chatter, one line about the new database.
    assert text.index("Application startup complete") < text.index("Trạm is up")
    assert "setup plugin" not in text and "Running upgrade" not in text
    assert "database schema created at revision" in text


def test_every_engine_dies_with_a_killed_supervisor(tmp_path: Path) -> None:
    up = TramUp(tmp_path, [], MASTER_KEY)
    up.wait_up()
    engines = children_of(up.process.pid)
    assert len(engines) == 2
    up.process.kill()
    up.process.wait()
    try:
        # llama-server can hang in its SIGTERM shutdown: its kind asks the kernel for SIGKILL.
        assert wait_until(lambda: not any(alive(engine) for engine in engines), 10)
    finally:
        for engine in engines:
            if alive(engine):
                os.kill(engine, signal.SIGKILL)  # not left running for the rest of the suite


def test_killed_engine_is_restarted_and_requests_fail_fast_meanwhile(tmp_path: Path) -> None:
    up = TramUp(tmp_path, [], MASTER_KEY)
    try:
        up.wait_up()
        engine = children_of(up.process.pid)[0]
        os.kill(engine, signal.SIGKILL)
        started = time.monotonic()
        during = httpx.post(up.url + "/v1/chat/completions", json=HELLO, headers=AUTH, timeout=60)
        assert time.monotonic() - started < 2
        assert during.status_code in (502, 503)
        assert during.json()["error"]["code"] in ("engine_unreachable", "engine_unavailable")
        assert wait_until(lambda: httpx.post(up.url + "/v1/chat/completions", json=HELLO,
                                             headers=AUTH, timeout=60).status_code == 200)
        assert children_of(up.process.pid) != [engine]
        assert "restarting" in up.text()
    finally:
        assert up.stop() == 0


def test_engine_that_cannot_start_gives_a_clear_message_and_exit_1(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_text("this is not a model")
    up = TramUp(tmp_path, ["--model", f"qwen-text={bad}"], MASTER_KEY)
    assert up.wait_exit(60) == 1
    text = up.text()
    assert "engine for qwen-text (llamacpp) exited with code" in text
    assert "Traceback" not in text
    assert not children_of(up.process.pid)


def test_bad_model_argument_is_a_config_error(tmp_path: Path) -> None:
    up = TramUp(tmp_path, ["--model", "qwen-text=/nonexistent/model.gguf"], MASTER_KEY)
    assert up.wait_exit(30) == 2
    assert "neither a .gguf file nor a Hugging Face checkpoint folder" in up.text()
