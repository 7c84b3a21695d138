"""Budgets and token limits hold against requests that end before the engine's usage: a key
with a 60-token daily budget used to get stream after cut stream through with usage still 0."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest

from tests.conftest import GatewayFactory
from tests.support.fault_engine import EngineLog
from tests.support.keys import key_with
from tests.support.servers import clean_env
from tests.support.tram_up import TramUp
from tram.config import Settings
from tram.meter import Meter, is_generated, prompt_estimate
from tram.requestlog import RequestRecord

COUNT = [{"role": "user", "content": "Count from 1 to 200, one number per line."}]
# At temperature 0 the embedded model answers this with its whole 200-token allowance, so a
# stream is always still running when the client cuts it (at its default temperature it once
# stopped after 5 tokens).
LONG = [{"role": "user", "content": "List the numbers from 1 to 100, separated by commas."}]


def count_deltas(choices: list[dict]) -> int:
    return sum(1 for choice in choices if is_generated(choice.get("delta") or {}))


def _cut_stream(url: str, headers: dict[str, str], model: str = "qwen-text",
                after: int = 6, **extra: object) -> int:
    """Open a stream, read `after` content chunks and hang up; the status it was answered."""
    with httpx.stream("POST", url + "/v1/chat/completions", headers=headers, timeout=60,
                      json={"model": model, "messages": LONG, "stream": True, "max_tokens": 200,
                            "temperature": 0, "seed": 7, **extra}) as response:
        if response.status_code != 200:
            response.read()
            return response.status_code
        seen = 0
        for line in response.iter_lines():
            if line.startswith("data: {") and count_deltas(orjson.loads(line[6:])["choices"]):
                seen += 1
                if seen == after:
                    break
        assert seen == after, "the stream ended before the client cut it"
    return 200


def _settled(url: str, auth: dict[str, str]) -> None:
    """Until the gateway has seen the hang-up and released the stream (on a loaded machine
    that takes longer than a client needs to open the next one, whose admission would then
    still count the last one's held ceiling)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        metrics = httpx.get(url + "/metrics", headers=auth).text
        if not any(line.startswith("tram_replica_in_flight{") and not line.endswith(" 0.0")
                   for line in metrics.splitlines()):
            break
        time.sleep(0.02)
    time.sleep(0.05)  # the limiter's release follows the replica's by a few awaits


def _usage(url: str, auth: dict[str, str]) -> dict:
    rows = httpx.get(url + "/admin/usage?by=key", headers=auth).json()["data"]
    assert len(rows) == 1
    return rows[0]


@pytest.fixture(params=["in-process", "redis"])
def limits(request: pytest.FixtureRequest) -> Iterator[dict[str, object]]:
    if request.param == "in-process":
        yield {}
    else:
        yield {"redis_url": request.getfixturevalue("redis_server").url}


@pytest.mark.engine
def test_cut_streams_spend_a_daily_budget(gateway: GatewayFactory, auth: dict,
                                          embedded: TramUp, limits: dict) -> None:
    models = [{"name": "qwen-text", "upstreams": [embedded.engine_upstream("qwen-text",
                                                                           "qwen-text")]}]
    with gateway(models=models, limits=limits) as url:
        headers = key_with(url, auth, budget_tokens=60, budget_period="day")
        statuses = []
        for _ in range(12):
            statuses.append(_cut_stream(url, headers))
            _settled(url, auth)  # the next admission must not count this one's held ceiling
        usage = _usage(url, auth)
    # Each cut stream is charged its prompt (estimated: 17) and the deltas relayed (≥ 6).
    refused = statuses.index(429)
    assert statuses[:2] == [200, 200] and refused <= 4, statuses
    assert set(statuses[refused:]) == {429}
    assert usage["estimated_requests"] == refused  # every served stream, marked estimated
    assert usage["prompt_tokens"] >= 10 * refused and usage["completion_tokens"] >= 6 * refused
    assert usage["total_tokens"] >= 60


def test_a_cut_stream_is_charged_the_engines_running_count(
        gateway: GatewayFactory, auth: dict, engine_log: EngineLog,
        fault_engine_server: tuple[str, EngineLog]) -> None:
    models = [{"name": "vllm-like", "stream_usage": "running",
               "upstreams": [{"url": fault_engine_server[0], "served_name": "slow-stream"}]}]
    with gateway(models=models) as url:
        headers = key_with(url, auth, max_total_tokens=10_000)
        events: list[dict] = []
        with httpx.stream("POST", url + "/v1/chat/completions", headers=headers, timeout=30,
                          json={"model": "vllm-like", "messages": COUNT, "stream": True}) as answer:
            for line in answer.iter_lines():
                if line.startswith("data: {"):
                    events.append(orjson.loads(line[6:]))
                    if len(events) == 5:
                        break
        time.sleep(0.3)  # the gateway notices the disconnect and settles
        usage = _usage(url, auth)
    sent = engine_log.received[-1]["stream_options"]
    assert sent == {"include_usage": True, "continuous_usage_stats": True}
    assert all("usage" not in event for event in events)  # the client asked for none of it
    # The engine's own count (3 tokens a chunk, prompt 7), not the gateway's delta count.
    assert usage["prompt_tokens"] == 7
    assert usage["completion_tokens"] >= 15 and usage["completion_tokens"] % 3 == 0
    assert usage["estimated_requests"] == 1


def test_running_usage_the_client_asked_for_is_relayed(
        gateway: GatewayFactory, auth: dict, fault_engine_server: tuple[str, EngineLog]) -> None:
    models = [{"name": "vllm-like", "upstreams": [{"url": fault_engine_server[0],
                                                   "served_name": "slow-stream"}]}]
    with gateway(models=models) as url:
        answer = httpx.post(url + "/v1/chat/completions", headers=auth, timeout=30, json={
            "model": "vllm-like", "messages": COUNT, "stream": True, "chunks": 3,
            "stream_options": {"continuous_usage_stats": True}})
    chunks = [orjson.loads(line[6:]) for line in answer.text.splitlines()
              if line.startswith("data: {")]
    assert [c["usage"]["completion_tokens"] for c in chunks if c.get("usage")] == [3, 6, 9]


def test_a_json_request_cancelled_mid_generation_is_charged_its_prompt(
        gateway: GatewayFactory, auth: dict, engine_log: EngineLog, settings: Settings) -> None:
    with gateway() as url:
        headers = key_with(url, auth, max_total_tokens=10_000)
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(url + "/v1/chat/completions", headers=headers, timeout=0.5,
                       json={"model": "m-slow-json", "messages": COUNT})
        deadline = time.monotonic() + 5
        while not engine_log.cancelled:
            assert time.monotonic() < deadline, "the engine request was not cancelled"
            time.sleep(0.05)
        time.sleep(0.2)
        usage = _usage(url, auth)
    assert usage["prompt_tokens"] == prompt_estimate({"messages": COUNT}) > 0
    assert usage["completion_tokens"] == 0 and usage["estimated_requests"] == 1
    # `tram usage` says so too, in its own column.
    shown = subprocess.run([sys.executable, "-m", "tram", "usage", "--by", "key"],
                           env=clean_env(TRAM_DATA_DIR=str(settings.data_dir)),
                           capture_output=True, text=True, check=True).stdout.splitlines()
    assert shown[0].split()[-1] == "estimated"
    assert shown[1].split()[-1] == "1" and "gateway counted" in shown[-1]


def test_a_refused_or_unreached_engine_costs_nothing(gateway: GatewayFactory, auth: dict) -> None:
    with gateway() as url:
        headers = key_with(url, auth, max_total_tokens=10_000)
        assert httpx.post(url + "/v1/chat/completions", headers=headers, json={
            "model": "m-error-400", "messages": COUNT}).status_code == 400
        usage = _usage(url, auth)
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (0, 0)
    assert usage["estimated_requests"] == 0


def test_prompt_estimate_and_delta_count() -> None:
    payload = {"messages": [
        {"role": "system", "content": "a" * 40},
        {"role": "user", "content": [{"type": "text", "text": "b" * 8},
                                     {"type": "image_url", "image_url": {"url": "x"}}]}]}
    assert prompt_estimate(payload) == 10 + 2 + 2 * 4 + 256
    assert prompt_estimate({"messages": "not a list"}) == 0
    choices = [{"index": 0, "delta": {"content": "x"}}, {"index": 1, "delta": {"role": "a"}},
               {"index": 2, "delta": {"reasoning_content": "r"}},
               {"index": 3, "delta": {"tool_calls": [{"index": 0}]}}]
    assert count_deltas(choices) == 3
    assert not is_generated({"content": "", "role": "assistant"})


def test_settle_keeps_the_engines_final_figures() -> None:
    exact = RequestRecord("r", "POST", "/v1/chat/completions", meter=Meter(engine_working=True))
    exact.meter.engine_usage({"prompt_tokens": 5, "completion_tokens": 9})
    exact.meter.relayed(20)
    exact.meter.settle({"messages": COUNT})
    assert (exact.prompt_tokens, exact.completion_tokens, exact.tokens_estimated) == (5, 9, False)
    running = RequestRecord("r", "POST", "/v1/chat/completions",
                            meter=Meter(engine_working=True))
    running.meter.engine_usage({"prompt_tokens": 5, "completion_tokens": 9}, final=False)
    running.meter.relayed(4)
    running.meter.settle({"messages": COUNT})
    assert (running.prompt_tokens, running.completion_tokens, running.tokens_estimated) == \
        (5, 9, True)
    never_sent = RequestRecord("r", "POST", "/v1/chat/completions")
    never_sent.meter.settle({"messages": COUNT})
    assert (never_sent.prompt_tokens, never_sent.tokens_estimated) == (None, False)
