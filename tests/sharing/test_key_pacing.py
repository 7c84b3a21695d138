"""Prompts per key (`sharing.queue.key_prompts`): while another key uses the model, one key has
at most N requests counted as computing their prompt; a key alone is not held, a held key holds
back no other key, and the gate starts its next request at the estimated prompt end. In a live
gateway in front of a scripted engine (tests/support/held_engine.py), a busy key's requests
reach the engine one estimated prompt apart while another key's go at once."""

from __future__ import annotations

import asyncio
import itertools
import math
import threading
import time
from pathlib import Path

import pytest

from tests.sharing.test_gateway_queue import AUTH, chat, new_key
from tests.sharing.test_sharing_view import held_gateway
from tests.support.held_engine import HeldEngine
from tests.support.servers import serve_app
from tram.api.table import MODEL_ROUTES
from tram.auth.principal import Principal
from tram.config import SharingConfig, parse_config
from tram.errors import ConfigError
from tram.meter import prompt_estimate
from tram.relay.queueing import Queues
from tram.requestlog import RequestRecord
from tram.routing.registry import Registry
from tram.sharing.fairqueue import FairQueue, Ticket, Verdict
from tram.sharing.gate import RECHECK, Gate
from tram.sharing.pacing import Contention

PER_KEY = {"key_prompts": 1, "prompt_tokens_per_second": 1000.0}


def big(count: int) -> list[Ticket]:
    return [Ticket("big", item=f"b{i}", prompt_seconds=1.0) for i in range(count)]


def test_a_key_alone_is_not_held() -> None:
    queue = FairQueue(lambda: math.inf, key_prompts=1)
    assert [queue.offer(t, 0).name for t in big(3)] == ["START"] * 3


def test_beside_another_key_a_key_starts_its_limit_and_the_other_is_not_held_back() -> None:
    queue = FairQueue(lambda: math.inf, key_prompts=2)
    assert queue.offer(Ticket("small", prompt_seconds=1.0), 0) is Verdict.START
    tickets = big(3)
    assert [queue.offer(t, 0.1).name for t in tickets] == ["START", "START", "QUEUED"]
    # big's ticket waits, yet a new one of another key starts at once
    assert queue.offer(Ticket("small", prompt_seconds=1.0), 0.2) is Verdict.START
    assert queue.next_prompt_end(0.3) == pytest.approx(1.1)
    assert queue.ready(1.0) == []
    assert queue.ready(1.1) == [tickets[2]]  # one of its prompts is estimated done
    queue.done(tickets[2], 1.2)  # done before its estimate: no longer counted
    assert queue.offer(Ticket("big", prompt_seconds=1.0), 1.2) is Verdict.START


def test_a_held_key_s_head_does_not_hold_back_another_key_s() -> None:
    queue = FairQueue(lambda: 2, key_prompts=1)
    first_small = Ticket("small", prompt_seconds=0.1)
    assert queue.offer(first_small, 0) is Verdict.START
    tickets = big(2)
    assert [queue.offer(t, 0).name for t in tickets] == ["START", "QUEUED"]
    late_small = Ticket("small", prompt_seconds=0.1)
    assert queue.offer(late_small, 0) is Verdict.QUEUED  # the two slots are taken
    queue.done(first_small, 0.5)
    # big's waiting ticket is ahead in fair order (offered first, equal tags) but held
    assert queue.ready(0.5) == [late_small]
    queue.done(tickets[0], 0.6)
    assert queue.ready(0.6) == [tickets[1]]


def test_the_pacing_ends_when_the_other_key_went_quiet() -> None:
    queue = FairQueue(lambda: math.inf, key_prompts=1, contended_for=10.0)
    assert queue.offer(Ticket("small"), 0) is Verdict.START
    assert [queue.offer(t, 5).name for t in big(2)] == ["START", "QUEUED"]
    assert [queue.offer(t, 20).name for t in big(2)] == ["QUEUED"] * 2  # its own wait first
    assert len(queue.ready(20)) == 3  # alone for 10: everything waiting starts


def test_contention_remembers_the_latest_other_key() -> None:
    seen = Contention(window=10)
    seen.seen("a", 0)
    assert not seen.contended("a", 1)
    seen.seen("b", 2)
    seen.seen("b", 3)
    seen.seen("c", 4)
    assert seen.contended("b", 5) and seen.contended("c", 5)
    assert not seen.contended("c", 14.5)  # b was last seen at 3, a long ago


@pytest.mark.parametrize("value", [0, -1])
def test_key_prompts_is_checked(value: int) -> None:
    with pytest.raises(ConfigError, match=r"sharing.queue.key_prompts.*greater than or equal"):
        parse_config({"sharing": {"queue": {"key_prompts": value}}}, "test")


def test_every_request_gets_a_prompt_estimate_when_keys_are_paced() -> None:
    config = parse_config({"models": [{"name": "m", "upstreams": [
        {"url": "http://127.0.0.1:9/v1"}]}], "sharing": {"queue": PER_KEY}}, "test")
    registry = Registry.from_models(config.models)
    queues = Queues(registry, config.sharing)
    pool = registry.get("m")
    assert pool is not None
    route = next(route for route in MODEL_ROUTES if route.name == "chat")
    payload = {"model": "m", "messages": [{"role": "user", "content": "word " * 800}]}

    async def scenario() -> float:
        offered = queues.offer(pool, route, Principal("key_1", is_master=False), payload,
                               RequestRecord("r1", "POST", "/v1/chat/completions"))
        assert offered is not None
        return offered[1].prompt_seconds
    assert asyncio.run(scenario()) == pytest.approx(prompt_estimate(payload) / 1000.0)


def test_the_gate_starts_a_held_key_at_its_prompt_s_estimated_end() -> None:
    async def scenario() -> float:
        gate = Gate("m", lambda: math.inf, SharingConfig().queue.model_copy(update=PER_KEY))
        other = await gate.enter("small", 1.0, "interactive", 1.0)
        first = await gate.enter("big", 1.0, "interactive", 1.0, prompt_seconds=0.15)
        began = time.monotonic()
        second = await gate.enter("big", 1.0, "interactive", 1.0, prompt_seconds=0.15)
        waited = time.monotonic() - began
        for ticket in (other, first, second):
            gate.leave(ticket)
        return waited
    waited = asyncio.run(scenario())
    assert 0.12 <= waited < min(0.6, RECHECK)  # its timer, not the 1 s recheck


def test_a_live_gateway_spaces_a_busy_key_and_lets_another_through(tmp_path: Path) -> None:
    """Requests held at a scripted engine (none finishes): beside the master key, a key's
    requests reach the engine one estimated prompt apart; the master key's second goes at
    once, ahead of the busy key's waiting ones."""
    engine = HeldEngine()
    prompt = "word " * 400  # ~500 tokens estimated: 0.5 s at 1,000 tokens/s
    with serve_app(engine.app) as engine_url, \
            held_gateway(tmp_path, engine_url, queue=PER_KEY) as url:
        threading.Thread(target=chat, args=(url, AUTH, "s0")).start()
        engine.wait_arrived(1)
        _, busy = new_key(url, "busy")
        threads = [threading.Thread(target=chat, args=(url, busy, f"b{i} {prompt}"))
                   for i in range(3)]
        for thread in threads:
            thread.start()
        engine.wait_arrived(2)
        second = threading.Thread(target=chat, args=(url, AUTH, "s1"))
        second.start()
        engine.wait_arrived(5, timeout=15)
        engine.release(5)
        for thread in [*threads, second]:
            thread.join(30)
    order = [tag.split()[0] for tag in engine.arrived]
    times = dict(zip(order, engine.arrived_at, strict=True))
    spaced = sorted(times[tag] for tag in ("b0", "b1", "b2"))
    assert all(0.45 <= later - earlier < 0.85 for earlier, later in itertools.pairwise(spaced))
    assert order.index("s1") == 2  # right after the busy key's first, not behind its others
