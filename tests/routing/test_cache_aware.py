"""cache_aware routing with fake replicas: prefix reuse, the load bound, engine load, and
several gateways agreeing without sharing anything."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tests.conftest import MASTER_KEY
from tests.support.fault_engine import EngineLog, fault_engine
from tests.support.servers import serve_app
from tram.app import create_app
from tram.config import RoutingConfig, Settings, parse_config
from tram.routing.engine_load import EngineLoad, parse_metrics, penalty
from tram.routing.policies import RoutingHints
from tram.routing.prefix import CacheAware, prefix_key

SYSTEM = "You are a careful assistant for the billing team. " * 20  # ~1,000 characters


@dataclass(eq=False)
class Fake:
    url: str
    outstanding: int = 0
    engine_penalty: float = 0.0
    engine_read_at: float = 0.0

    @property
    def routing_load(self) -> float:
        return self.outstanding + self.engine_penalty
    weight: int = 1


class Clock:
    """A fake monotonic clock (seconds) for the policy's recent-sends signal."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float = 10.0) -> Clock:
        self.now += seconds
        return self


def _fleet(n: int) -> list[Fake]:
    return [Fake(f"http://replica-{i}:8000/v1") for i in range(n)]


def _conversation(user: int, turns: int) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": SYSTEM},
                {"role": "user", "content": f"I am user {user}. " + "Here is my invoice. " * 30}]
    for turn in range(turns):
        messages += [{"role": "assistant", "content": f"Answer {turn} " * 20},
                     {"role": "user", "content": f"Follow-up {turn} " * 15}]
    return messages


def _hints(messages: list[dict[str, str]], config: RoutingConfig,
           user: str | None = None) -> RoutingHints:
    return RoutingHints(prefix=prefix_key(messages, config.block_chars, config.max_blocks, user))


def test_a_conversation_stays_where_its_history_is_cached() -> None:
    config = RoutingConfig(policy="cache_aware")
    clock = Clock()
    policy, fleet = CacheAware(config, clock=clock), _fleet(8)
    for user in range(20):
        # Turns seconds apart (each waits for the previous answer): no load anywhere.
        chosen = {policy.choose(fleet, _hints(_conversation(user, turns), config)).url
                  for turns in range(6) if clock.tick()}
        assert len(chosen) == 1, user  # every turn on the same replica
    assert policy.last_reason == "prefix_hit" and policy.last_match > 0.8
    # Conversations arriving all at once: spread over the fleet, not only by their owners.
    spread = Counter(policy.choose(fleet, _hints(_conversation(u, 0), config)).url
                     for u in range(400))
    assert len(spread) == 8 and max(spread.values()) < 1.25 * 400 / 8


def test_a_shared_document_goes_where_it_was_read_before() -> None:
    config = RoutingConfig(policy="cache_aware")
    policy, fleet = CacheAware(config), _fleet(8)
    document = "Clause 4.2: the supplier shall deliver within thirty days. " * 80
    first = policy.choose(fleet, _hints([{"role": "user", "content": document + "Q1?"}],
                                        config))
    for question in range(2, 12):
        again = policy.choose(fleet, _hints(
            [{"role": "user", "content": document + f"Question {question}?"}], config))
        assert again is first and policy.last_reason == "prefix_hit"


def test_gateways_that_share_nothing_send_a_document_to_one_replica() -> None:
    config = RoutingConfig(policy="cache_aware")
    fleet = _fleet(8)
    documents = [f"Contract {n}: " + f"clause {n} applies to the supplier. " * 200
                 for n in range(40)]
    homes = []
    for n, document in enumerate(documents):
        # Each question about the document reaches a gateway that never saw it before.
        chosen = {CacheAware(config).choose(fleet, _hints(
            [{"role": "system", "content": "Answer from the document."},
             {"role": "user", "content": f"{document}\nQuestion {q} about {n}?"}], config)).url
            for q in range(6)}
        assert len(chosen) == 1, n
        homes.append(chosen.pop())
    assert len(set(homes)) >= 6  # documents spread over the fleet, not piled on one replica


def test_the_load_bound_passes_over_a_busy_replica() -> None:
    config = RoutingConfig(policy="cache_aware", load_factor=1.25)
    policy, fleet = CacheAware(config), _fleet(4)
    owner = policy.choose(fleet, _hints(_conversation(1, 1), config))
    owner.outstanding = 10  # far over 1.25 × the mean
    other = policy.choose(fleet, _hints(_conversation(1, 2), config))
    assert other is not owner and policy.last_reason in ("load_spill", "load_fallback")
    owner.outstanding = 0
    # The conversation's last turn is now cached where it spilled: it stays there.
    assert policy.choose(fleet, _hints(_conversation(1, 3), config)) is other
    # The engine's own queue (other gateways' requests, read from its /metrics) counts too.
    hints = _hints(_conversation(5, 0), config)
    home = CacheAware(config).choose(fleet, hints)
    home.engine_penalty = 40.0
    assert CacheAware(config).choose(fleet, hints) is not home
    home.engine_penalty = 0.0
    assert CacheAware(config).choose(fleet, hints) is home


def test_gateways_that_share_nothing_agree_and_survive_a_restart() -> None:
    config = RoutingConfig(policy="cache_aware")
    fleet = _fleet(8)
    clock = Clock()
    gateways = [CacheAware(config, clock=clock) for _ in range(4)]
    for user in range(50):
        # Each turn of a conversation taken by another gateway, in turn (as --workers N does),
        # seconds apart: no load anywhere.
        chosen = {gateways[turns % 4].choose(fleet, _hints(_conversation(user, turns), config))
                  .url for turns in range(8) if clock.tick()}
        assert len(chosen) == 1, user
    fresh = CacheAware(config, clock=clock)  # a restarted gateway: empty table, same answers
    for user in range(50):
        clock.tick()
        assert fresh.choose(fleet, _hints(_conversation(user, 3), config)).url == \
            gateways[0].choose(fleet, _hints(_conversation(user, 3), config)).url


def test_the_same_hashes_in_every_process() -> None:
    config = RoutingConfig()
    script = ("from tests.routing.test_cache_aware import _conversation;"
              "from tram.routing.prefix import prefix_key;"
              "k = prefix_key(_conversation(3, 2), 512, 64); print(k.anchor, k.blocks[-1])")
    outputs = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              check=True, env={"PYTHONHASHSEED": seed, "PATH": ""},
                              cwd=".").stdout for seed in ("1", "2")}
    key = prefix_key(_conversation(3, 2), config.block_chars, config.max_blocks)
    assert outputs == {f"{key.anchor} {key.blocks[-1]}\n"}


def test_a_replica_leaving_moves_only_its_own_conversations() -> None:
    config = RoutingConfig(policy="cache_aware")
    fleet = _fleet(8)
    before = {u: CacheAware(config).choose(fleet, _hints(_conversation(u, 0), config)).url
              for u in range(200)}
    gone = fleet[3]
    after = {u: CacheAware(config).choose([r for r in fleet if r is not gone],
                                          _hints(_conversation(u, 0), config)).url
             for u in range(200)}
    moved = [u for u in before if before[u] != after[u]]
    assert moved and all(before[u] == gone.url for u in moved)


def test_engine_metrics_vllm_and_llamacpp() -> None:
    vllm = (b'# HELP vllm:num_requests_waiting x\nvllm:num_requests_waiting{model_name="q"} 6.0\n'
            b'vllm:num_requests_running{model_name="q"} 30.0\n'
            b'vllm:kv_cache_usage_perc{model_name="q"} 0.95\n')
    assert parse_metrics(vllm) == EngineLoad(waiting=6.0, running=30.0, kv_usage=0.95)
    llama = b"llamacpp:requests_deferred 2\nllamacpp:requests_processing 4\n" \
            b"llamacpp:kv_cache_usage_ratio 0.5\n"
    assert parse_metrics(llama) == EngineLoad(waiting=2.0, running=4.0, kv_usage=0.5)
    assert parse_metrics(b"some_other_metric 1\n") is None
    config = RoutingConfig(queue_weight=1.0, kv_weight=4.0)
    assert abs(penalty(EngineLoad(6, 30, 0.95), config) - (6 + 4 * 0.75)) < 1e-9


def _engine_with_metrics(log: EngineLog, metrics: str | None, delay: float = 0.0) -> Starlette:
    app = fault_engine(log)

    async def serve_metrics(request: Request) -> Response:
        await asyncio.sleep(delay)
        if metrics is None:
            return PlainTextResponse("no metrics here", status_code=404)
        return PlainTextResponse(metrics)

    app.router.routes.append(Route("/metrics", serve_metrics))
    return app


def _wait_for_reading(url: str, auth: dict[str, str], replica: str, load: float) -> None:
    """Until the gateway's /metrics shows `replica`'s engine load at `load`: its first scrape
    has landed (a fixed sleep raced it on a loaded CI machine)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for line in httpx.get(url + "/metrics", headers=auth).text.splitlines():
            if line.startswith("tram_replica_engine_load{") and replica in line \
                    and float(line.rsplit(" ", 1)[1]) == load:
                return
        time.sleep(0.05)
    raise AssertionError(f"no engine reading of {load} for {replica}")


def test_scraping_steers_away_from_a_queue_and_never_slows_routing(settings: Settings) -> None:
    busy_log, calm_log, slow_log = EngineLog(), EngineLog(), EngineLog()
    # 1000 waiting: more than 30 prompts sent to the others could weigh, however fast sent.
    busy = _engine_with_metrics(busy_log, 'vllm:num_requests_waiting{m="x"} 1000\n')
    calm = _engine_with_metrics(calm_log, 'vllm:num_requests_waiting{m="x"} 0\n')
    slow = _engine_with_metrics(slow_log, 'vllm:num_requests_waiting{m="x"} 0\n', delay=30)
    with serve_app(busy) as busy_url, serve_app(calm) as calm_url, \
            serve_app(slow) as slow_url:
        # A second for each scrape: a loaded machine answers the calm engines' /metrics in
        # time; the slow one never answers (routing must not wait on it either way).
        models = [{"name": "m", "routing": {"policy": "cache_aware", "scrape_interval": 0.2,
                                            "scrape_timeout": 1.0},
                   "upstreams": [{"url": u + "/v1", "served_name": "echo"}
                                 for u in (busy_url, calm_url, slow_url)]}]
        with serve_app(create_app(settings, parse_config({"models": models}, "t"))) as url:
            auth = {"Authorization": f"Bearer {MASTER_KEY}"}
            _wait_for_reading(url, auth, busy_url, 1000.0)  # the slow one times out every time
            started = time.monotonic()
            for user in range(30):
                answer = httpx.post(url + "/v1/chat/completions", headers=auth, timeout=10,
                                    json={"model": "m", "messages": _conversation(user, 0)})
                assert answer.status_code == 200
            elapsed = time.monotonic() - started
            metrics = httpx.get(url + "/metrics", headers=auth).text
    assert elapsed < 3.0  # 30 requests: no request waited on a 30 s /metrics
    assert len(busy_log.received) == 0  # over the bound for every conversation
    assert len(calm_log.received) + len(slow_log.received) == 30
    assert 'tram_routing_decisions_total{model="m",reason=' in metrics
    assert "tram_replica_engine_load" in metrics and "tram_replica_prefix_hit_estimate" in metrics


def _unique(n: int) -> list[dict[str, str]]:
    """A prompt that shares nothing with any other (the fleet benchmark's control)."""
    return [{"role": "user", "content": f"Unrelated request {n}: " + f"word{n} " * 400}]


def _warm(policy: CacheAware, clock: Clock, fleet: list[Fake], config: RoutingConfig,
          messages: list[list[dict[str, str]]]) -> None:
    """Traffic long past (a second apart, answered): what the gateway learned from it."""
    for prompt in messages:
        clock.tick(1.0)
        policy.choose(fleet, _hints(prompt, config))
    clock.tick(60.0)


def test_new_prompts_sent_together_spread_by_what_was_just_sent_not_by_hash() -> None:
    """Prompts with nothing cached anywhere, routed faster than the replicas answer them: each
    goes where the least prefill was just sent, not stacked on its hash owner. Every send
    here is one more request in flight; none is answered yet (the engines' own queues are not
    scraped that often), so in-flight counts alone would allow 4-5 on one replica."""
    config = RoutingConfig(policy="cache_aware")
    clock, fleet = Clock(), _fleet(4)
    policy = CacheAware(config, clock=clock)
    _warm(policy, clock, fleet, config, [_unique(n) for n in range(1000, 1200)])
    for n in range(16):
        clock.tick(0.005)
        chosen = policy.choose(fleet, _hints(_unique(n), config))
        chosen.outstanding += 1
    assert [r.outstanding for r in fleet] == [4, 4, 4, 4]


def test_an_unseen_opening_goes_to_its_owner_where_openings_come_back() -> None:
    """Where this gateway's openings recur (RAG documents, conversations), an unseen one is
    likely cached at its owner by another gateway: a request in flight there does not move
    it. Where they never recur, it does."""
    config = RoutingConfig(policy="cache_aware")
    documents = [[{"role": "user", "content": f"Contract {d}: " + f"clause {d} " * 300
                   + f"\nQuestion {q}?"}] for q in range(10) for d in range(20)]
    uniques = [_unique(n) for n in range(1000, 1200)]
    new_document = [{"role": "user", "content": "Contract 99: " + "clause 99 " * 300}]
    for history, expect_owner in ((documents, True), (uniques, False)):
        clock, fleet = Clock(), _fleet(4)
        policy = CacheAware(config, clock=clock)
        _warm(policy, clock, fleet, config, history)
        owner = CacheAware(config).choose(fleet, _hints(new_document, config))
        owner.outstanding = 1
        chosen = policy.choose(fleet, _hints(new_document, config))
        assert (chosen is owner) == expect_owner, history[0][0]["content"][:12]


def test_what_an_engine_reading_covers_no_longer_counts_as_ahead_of_it() -> None:
    """Openings sent fast to replicas whose engines then report an empty queue: those sends
    are in the reading (answered, or running), not prefill still ahead of them, so a replica
    whose engine reports a queue of 30 gets none of the next openings."""
    config = RoutingConfig(policy="cache_aware")
    clock = Clock()
    policy = CacheAware(config, clock=clock)
    busy, calm, quiet = fleet = _fleet(3)
    busy.engine_penalty = 30.0
    chosen = []
    for user in range(60):
        clock.tick(0.01)  # 100 openings a second: far more than 30 requests' worth ahead
        if user % 5 == 0:  # a fresh reading every 50 ms
            for replica in fleet:
                replica.engine_read_at = clock.now
        chosen.append(policy.choose(fleet, _hints(_conversation(user, 0), config)))
    assert busy not in chosen
    assert {calm, quiet} <= set(chosen)
