"""Priorities reach real vLLM (its CPU build, started by `tram up` with the qwen3 preset's
`--scheduling-policy priority`): a gateway whose model goes through a recording proxy to
that engine's private socket shows the `priority` each request carried — its key's class,
and the batch class for every line of a Batch API batch — and vLLM, scheduling by priority,
answers them all. A reload of `sharing.priorities` changes the numbers sent; Messages (whose
vLLM request has no priority field) carries none, not even a client's own."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import MASTER_KEY
from tests.support.batches import chat_lines
from tests.support.recording_proxy import RecordingProxy, recording_proxy
from tests.support.servers import serve_app
from tests.support.tiny_qwen3 import ANSWER
from tests.support.tram_up import TramUp
from tram.app import create_app
from tram.config import Settings, parse_config

pytestmark = pytest.mark.vllm

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}


def _key(url: str, name: str, **fields: Any) -> str:
    made = httpx.post(url + "/admin/keys", headers=AUTH, json={"name": name, **fields},
                      timeout=10)
    assert made.status_code in (200, 201), made.text
    return str(made.json()["key"])


def _chat(url: str, key: str, **body: Any) -> dict[str, Any]:
    answer = httpx.post(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                        json={"model": "recorded", "max_tokens": 8,
                              "messages": [{"role": "user", "content": "hi"}], **body},
                        timeout=120)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def _sent_priorities(proxy: RecordingProxy) -> list[Any]:
    return [e.body.get("priority") for e in proxy.exchanges
            if e.path.endswith("/chat/completions") and isinstance(e.body, dict)]


def _run_batch(url: str, key: str, lines: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    uploaded = httpx.post(url + "/v1/files", headers=headers, data={"purpose": "batch"},
                          files={"file": ("b.jsonl", chat_lines(lines, "recorded"))}).json()
    batch = httpx.post(url + "/v1/batches", headers=headers, json={
        "input_file_id": uploaded["id"], "endpoint": "/v1/chat/completions",
        "completion_window": "24h"}).json()
    deadline = time.monotonic() + 300
    while batch["status"] not in ("completed", "failed", "expired", "cancelled"):
        assert time.monotonic() < deadline, batch
        time.sleep(0.25)
        batch = httpx.get(f"{url}/v1/batches/{batch['id']}", headers=headers).json()
    return dict(batch)


def _write(path: Path, upstream: dict[str, Any], batch: int) -> dict[str, Any]:
    data = {"models": [{"name": "recorded", "thinking": "off", "engine_priority": "send",
                        "upstreams": [upstream],
                        "timeouts": {"first_byte": 120, "idle": 60, "total": 300}}],
            "sharing": {"priorities": {"batch": batch}}}
    path.write_text(yaml.safe_dump(data))
    return data


def test_each_request_carries_its_keys_priority_to_vllm(vllm_up: TramUp, tiny_qwen3: Path,
                                                        tmp_path: Path) -> None:
    upstream = vllm_up.engine_upstream("qwen-text", str(tiny_qwen3))  # its served name
    socket = upstream.pop("socket")
    config = tmp_path / "tram.yaml"
    with recording_proxy("http://localhost", uds=socket) as proxy:
        upstream["url"] = proxy.url + "/v1"
        data = _write(config, upstream, 10)
        settings = Settings(master_key=MASTER_KEY, master_key_source="test",
                            config_path=config, data_dir=tmp_path / "data")
        with serve_app(create_app(settings, parse_config(data, str(config)))) as url:
            people = _key(url, "people")
            nightly = _key(url, "nightly", priority="batch")
            pinned = _key(url, "pinned", priority=3)
            for key in (people, nightly, pinned):
                assert _chat(url, key)["choices"][0]["message"]["content"].strip() == ANSWER
            assert _sent_priorities(proxy) == [0, 10, 3]
            # A client may ask for less than its key's priority, never for more.
            _chat(url, people, priority=7)
            _chat(url, nightly, priority=-50)
            assert _sent_priorities(proxy)[3:] == [7, 10]
            batch = _run_batch(url, people, 3)
            assert batch["status"] == "completed" and batch["request_counts"]["completed"] == 3
            assert _sent_priorities(proxy)[5:] == [10, 10, 10]  # each line, the batch class
            # Messages: vLLM's request has no priority; a client's own does not pass either.
            answer = httpx.post(url + "/v1/messages", headers={"x-api-key": nightly},
                                json={"model": "recorded", "max_tokens": 8, "priority": -50,
                                      "messages": [{"role": "user", "content": "hi"}]},
                                timeout=120)
            assert answer.status_code == 200, answer.text
            sent = [e.body for e in proxy.exchanges if e.path.endswith("/messages")]
            assert len(sent) == 1 and "priority" not in sent[0]
            # The class numbers are read again on a reload.
            _write(config, upstream, 50)
            reloaded = httpx.post(url + "/admin/reload", headers=AUTH, timeout=30)
            assert reloaded.status_code == 200, reloaded.text
            _chat(url, nightly)
            assert _sent_priorities(proxy)[-1] == 50
