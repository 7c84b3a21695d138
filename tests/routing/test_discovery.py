"""Replicas found by DNS (`discover: dns`), with a stub resolver: every address is a replica,
re-read as the answer changes; a failed lookup keeps the last replicas, an empty one removes
them; replicas that stay keep their health and in-flight counts."""

from __future__ import annotations

import pytest

from tram.config import ConfigError, parse_config
from tram.routing.discovery import discover_once
from tram.routing.registry import Registry


class StubResolver:
    def __init__(self) -> None:
        self.answer: list[str] | OSError = []
        self.asked: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append((host, port))
        if isinstance(self.answer, OSError):
            raise self.answer
        return self.answer


def _registry() -> Registry:
    config = parse_config({"models": [{"name": "qwen-text", "upstreams": [
        {"url": "http://vllm-qwen-text:8000/v1", "served_name": "Qwen/Qwen3-8B",
         "api_key": "sk-engine", "discover": "dns", "discover_interval": 5}]}]}, "test")
    return Registry.from_models(config.models)


async def test_every_address_is_a_replica_and_changes_are_followed() -> None:
    registry, resolve, due = _registry(), StubResolver(), {}
    pool = registry.get("qwen-text")
    assert pool is not None and [r.url for r in pool.replicas] == ["http://vllm-qwen-text:8000/v1"]

    resolve.answer = ["10.1.0.7", "10.1.0.8"]
    await discover_once(registry, resolve, due)
    pool = registry.get("qwen-text")
    assert pool is not None
    assert [r.url for r in pool.replicas] == ["http://10.1.0.7:8000/v1", "http://10.1.0.8:8000/v1"]
    assert {(r.served_name, r.api_key) for r in pool.replicas} == {("Qwen/Qwen3-8B", "sk-engine")}
    assert resolve.asked == [("vllm-qwen-text", 8000)]
    kept = pool.replicas[1]
    kept.outstanding = 3

    await discover_once(registry, resolve, due)  # not due yet: no look-up
    assert len(resolve.asked) == 1

    due.clear()
    resolve.answer = ["10.1.0.8", "10.1.0.9", "fd00::5"]  # one pod gone, two new
    await discover_once(registry, resolve, due)
    pool = registry.get("qwen-text")
    assert pool is not None
    assert [r.url for r in pool.replicas] == ["http://10.1.0.8:8000/v1", "http://10.1.0.9:8000/v1",
                                              "http://[fd00::5]:8000/v1"]
    assert pool.replicas[0] is kept and kept.outstanding == 3  # carried over, counts and all
    assert pool.pick() in pool.replicas


async def test_a_failed_lookup_keeps_the_replicas_and_an_empty_answer_removes_them() -> None:
    registry, resolve, due = _registry(), StubResolver(), {}
    resolve.answer = ["10.1.0.7"]
    await discover_once(registry, resolve, due)
    due.clear()
    resolve.answer = OSError("Temporary failure in name resolution")
    await discover_once(registry, resolve, due)
    pool = registry.get("qwen-text")
    assert pool is not None and [r.url for r in pool.replicas] == ["http://10.1.0.7:8000/v1"]
    due.clear()
    resolve.answer = []
    await discover_once(registry, resolve, due)
    pool = registry.get("qwen-text")
    assert pool is not None and pool.replicas == [] and pool.pick() is None


def test_dns_discovery_needs_plain_http() -> None:
    with pytest.raises(ConfigError, match=r"upstreams\[0\].*discover: dns needs an http"):
        parse_config({"models": [{"name": "m", "upstreams": [
            {"url": "https://engines:8000/v1", "discover": "dns"}]}]}, "tram.yaml")
