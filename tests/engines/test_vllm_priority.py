"""Priorities reach real vLLM (its CPU build, started by `tram up` with the qwen3 preset's
`--scheduling-policy priority`): a gateway whose model goes through a recording proxy to
that engine's private socket shows the `priority` each request carried — its key's class,
and the batch class for every line of a Batch API batch — and vLLM, scheduling by priority,
answers them all."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import MASTER_KEY, GatewayFactory
from tests.support.batches import chat_lines
from tests.support.recording_proxy import RecordingProxy, recording_proxy
from tests.support.tiny_qwen3 import ANSWER
from tests.support.tram_up import TramUp

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


def test_each_request_carries_its_keys_priority_to_vllm(vllm_up: TramUp, tiny_qwen3: Path,
                                                        gateway: GatewayFactory) -> None:
    upstream = vllm_up.engine_upstream("qwen-text", str(tiny_qwen3))  # its served name
    socket = upstream.pop("socket")
    with recording_proxy("http://localhost", uds=socket) as proxy:
        models = [{"name": "recorded", "thinking": "off", "engine_priority": "send",
                   "upstreams": [{**upstream, "url": proxy.url + "/v1"}]}]
        with gateway(models=models, timeouts={"first_byte": 120, "idle": 60,
                                              "total": 300}) as url:
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
