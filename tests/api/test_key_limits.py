"""Per-key limits at admission: rpm, tpm from the engine's counts, concurrency, token budget."""

from __future__ import annotations

import threading
import time

import httpx

from tests.conftest import GatewayFactory
from tests.support.fault_engine import EngineLog
from tram.limits.memory import KeyLimits, Limiter

USER = [{"role": "user", "content": "hi"}]


def key_with(url: str, auth: dict, **limits: int) -> dict[str, str]:
    made = httpx.post(url + "/admin/keys", headers=auth, json={"name": "limited", **limits})
    assert made.status_code == 201, made.text
    return {"Authorization": f"Bearer {made.json()['key']}"}


def chat(url: str, headers: dict, model: str = "qwen-text") -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", headers=headers, timeout=30,
                      json={"model": model, "messages": USER})


def test_rpm_gives_429_with_retry_after_before_the_engine(gateway: GatewayFactory, auth: dict,
                                                         engine_log: EngineLog) -> None:
    with gateway() as url:
        headers = key_with(url, auth, rpm=3)
        statuses = [chat(url, headers).status_code for _ in range(3)]
        refused = chat(url, headers)
        master = chat(url, auth)
    assert statuses == [200, 200, 200]
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert "3 requests per minute" in refused.json()["error"]["message"]
    assert len(engine_log.received) == 4  # 3 + the master key's; the refused one never left
    assert master.status_code == 200


def test_tpm_counts_the_engines_usage(gateway: GatewayFactory, auth: dict) -> None:
    with gateway() as url:
        headers = key_with(url, auth, tpm=15)  # each answer is 9 tokens (7 + 2): 0, 9, 18
        first, second, third = (chat(url, headers) for _ in range(3))
    assert (first.status_code, second.status_code) == (200, 200)
    assert third.status_code == 429 and "15 tokens per minute" in third.json()["error"]["message"]


def test_budget_is_insufficient_quota(gateway: GatewayFactory, auth: dict) -> None:
    with gateway() as url:
        headers = key_with(url, auth, max_total_tokens=10)
        assert chat(url, headers).status_code == 200
        assert chat(url, headers).status_code == 200  # 9 used: still under 10 at admission
        spent = chat(url, headers)
    assert spent.status_code == 429
    assert spent.json()["error"]["type"] == "insufficient_quota"
    assert spent.json()["error"]["code"] == "insufficient_quota"


def test_concurrency_limit(gateway: GatewayFactory, auth: dict) -> None:
    with gateway() as url:
        headers = key_with(url, auth, max_concurrency=1)
        threading.Thread(target=lambda: chat(url, headers, "m-slow-json"), daemon=True).start()
        time.sleep(0.4)
        refused = chat(url, headers)
    assert refused.status_code == 429 and "1 requests in flight" in refused.json()["error"]["message"]


async def test_limiter_windows_slide_and_the_budget_starts_from_recorded_usage() -> None:
    now = [1000.0]

    async def recorded(key_id: str) -> int:
        return 95

    limiter = Limiter(recorded, clock=lambda: now[0])
    limits = KeyLimits(rpm=2, max_total_tokens=100)
    await limiter.check("k", limits)
    await limiter.check("k", limits)
    try:
        await limiter.check("k", limits)
        raise AssertionError("expected a 429")
    except Exception as exc:  # noqa: BLE001 - the error type is what is checked
        assert type(exc).__name__ == "RateLimited" and exc.retry_after == 60  # type: ignore[attr-defined]
    now[0] += 60.5
    await limiter.check("k", limits)  # the window slid
    limiter.add_tokens("k", 5)
    now[0] += 61
    try:
        await limiter.check("k", limits)
        raise AssertionError("expected insufficient quota")
    except Exception as exc:  # noqa: BLE001
        assert type(exc).__name__ == "InsufficientQuota"
