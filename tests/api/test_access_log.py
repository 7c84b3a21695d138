"""One structured log line per request, with ids and counts but no prompt text and no keys."""

from __future__ import annotations

import logging
import time

import httpx
import orjson
import pytest

from tests.conftest import MASTER_KEY, GatewayFactory


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict]:
    return [orjson.loads(r.getMessage()) for r in caplog.records if r.name == "tram.access"]


def test_one_line_per_request_without_prompt_or_key(gateway: GatewayFactory, auth: dict,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tram.access")
    secret_prompt = "my secret prompt text 12345"
    with gateway() as url:
        httpx.post(url + "/v1/chat/completions", headers={**auth, "X-Request-ID": "log-1"},
                   json={"model": "qwen-text", "messages": [{"role": "user", "content": secret_prompt}]})
        httpx.post(url + "/v1/chat/completions", headers={"Authorization": "Bearer sk-wrong-key-999"},
                   json={"model": "qwen-text", "messages": []})
        time.sleep(0.2)
    lines = access_lines(caplog)
    assert len(lines) == 2
    ok, refused = lines
    assert ok["request_id"] == "log-1"
    assert ok["status"] == 200 and ok["model"] == "qwen-text" and ok["served_model"] == "echo"
    assert ok["key_id"] == "master"
    assert ok["prompt_tokens"] == 7 and ok["completion_tokens"] == 2
    assert ok["duration_ms"] >= 0
    assert refused["status"] == 401 and refused["error_code"] == "invalid_api_key"
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert secret_prompt not in text
    assert MASTER_KEY not in text and "sk-wrong-key-999" not in text


@pytest.mark.parametrize("target", ["tram.relay.service.ModelService.create",
                                    "tram.auth.principal.Authenticator.authenticate",
                                    "tram.api.models._card"])
def test_unexpected_errors_are_openai_500s_with_request_id(
        gateway: GatewayFactory, auth: dict, monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("internal detail with sk-secret-123")

    monkeypatch.setattr(target, explode)
    with gateway() as url:
        if target.endswith("_card"):
            response = httpx.get(url + "/v1/models", headers={**auth, "X-Request-ID": "boom-1"})
        else:
            response = httpx.post(url + "/v1/chat/completions",
                                  headers={**auth, "X-Request-ID": "boom-1"},
                                  json={"model": "qwen-text", "messages": [{"role": "user",
                                                                            "content": "x"}]})
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "boom-1"
    error = response.json()["error"]
    assert error["type"] == "server_error" and error["code"] == "internal_error"
    assert "sk-secret" not in response.text and "internal detail" not in response.text
