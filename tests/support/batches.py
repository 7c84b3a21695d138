"""Helpers of the Batch API tests: input files, waiting for a batch, reading its files."""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson

TERMINAL = {"completed", "failed", "expired", "cancelled"}


def chat_lines(count: int, model: str, start: int = 0, **body: Any) -> bytes:
    """`count` chat requests as JSONL, custom ids `line-<n>`, each saying its number."""
    return b"".join(orjson.dumps({
        "custom_id": f"line-{n}", "method": "POST", "url": "/v1/chat/completions",
        "body": {"model": model, "max_tokens": 8,
                 "messages": [{"role": "user", "content": f"say {n}"}], **body}}) + b"\n"
        for n in range(start, start + count))


def wait_batch(url: str, headers: dict[str, str], batch_id: str, timeout: float = 60,
               until: set[str] = TERMINAL) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        batch: dict[str, Any] = httpx.get(f"{url}/v1/batches/{batch_id}", headers=headers,
                                          timeout=10).json()
        if batch.get("status") in until:
            return batch
        assert time.monotonic() < deadline, batch
        time.sleep(0.1)


def file_lines(url: str, headers: dict[str, str], file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    answer = httpx.get(f"{url}/v1/files/{file_id}/content", headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    return [orjson.loads(line) for line in answer.content.splitlines() if line.strip()]


def upload(url: str, headers: dict[str, str], content: bytes,
           name: str = "input.jsonl") -> dict[str, Any]:
    answer = httpx.post(f"{url}/v1/files", headers=headers, data={"purpose": "batch"},
                        files={"file": (name, content, "application/jsonl")}, timeout=60)
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def start_batch(url: str, headers: dict[str, str], content: bytes,
                endpoint: str = "/v1/chat/completions") -> dict[str, Any]:
    file = upload(url, headers, content)
    answer = httpx.post(f"{url}/v1/batches", headers=headers, timeout=60, json={
        "input_file_id": file["id"], "endpoint": endpoint, "completion_window": "24h"})
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found
