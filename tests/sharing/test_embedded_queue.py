"""The fair queue on the real embedded engine: with `max_in_flight: 1`, concurrent requests
from two keys (weights 1 and 3) all wait their turn and complete, none refused."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support.keys import key_with
from tests.support.tram_up import TramUp


@pytest.mark.engine
def test_concurrent_requests_of_two_keys_queue_and_all_complete(
        gateway, auth: dict, embedded: TramUp) -> None:  # type: ignore[no-untyped-def]
    models = [{"name": "qwen-text", "max_in_flight": 1,
               "upstreams": [embedded.engine_upstream("qwen-text", "qwen-text")]}]
    with gateway(models=models) as url:
        keys = [key_with(url, auth, weight=1), key_with(url, auth, weight=3)]

        def ask(i: int) -> int:
            return httpx.post(url + "/v1/chat/completions", headers=keys[i % 2], timeout=120,
                              json={"model": "qwen-text", "max_tokens": 3,
                                    "messages": [{"role": "user", "content": f"Say {i}."}]}
                              ).status_code

        with ThreadPoolExecutor(6) as pool:
            statuses = list(pool.map(ask, range(6)))
        metrics = httpx.get(url + "/metrics", headers=auth).text
    assert statuses == [200] * 6
    assert 'tram_queue_admitted_total{model="qwen-text"}' in metrics
