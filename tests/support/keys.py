"""Helpers for tests that make virtual keys and chat with them through a gateway."""

from __future__ import annotations

import httpx

USER = [{"role": "user", "content": "hi"}]


def key_with(url: str, auth: dict[str, str], **fields: object) -> dict[str, str]:
    """A new virtual key with these fields (limits…), as request headers."""
    made = httpx.post(url + "/admin/keys", headers=auth, json={"name": "limited", **fields})
    assert made.status_code == 201, made.text
    return {"Authorization": f"Bearer {made.json()['key']}"}


def chat(url: str, headers: dict[str, str], model: str = "qwen-text") -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", headers=headers, timeout=30,
                      json={"model": model, "messages": USER})
