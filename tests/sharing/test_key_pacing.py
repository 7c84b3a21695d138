"""Prompts per key (`sharing.queue.key_prompts`): while the model is saturated (requests wait)
and another key uses it, one key has at most N requests counted as computing their prompt; a
key alone or a model with nothing waiting is not paced, a held key holds back no other key or
class, and the gate starts its next request at the estimated prompt end. In a live gateway in
front of a scripted engine (tests/support/held_engine.py), a busy key's waiting request is held
until its prompts are estimated done while another key's goes at once."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from pathlib import Path

import pytest

from tests.sharing.test_gateway_queue import AUTH, chat, new_key
from tests.sharing.test_pacing import LONG_CHAT, offered_prompt_seconds
from tests.sharing.test_sharing_view import held_gateway, model_view
from tests.support.held_engine import HeldEngine
from tests.support.servers import serve_app
from tram.config import SharingConfig, parse_config
from tram.errors import ConfigError
from tram.meter import prompt_estimate
from tram.requestlog import RequestRecord
from tram.sharing.fairqueue import FairQueue, Ticket, Verdict
from tram.sharing.gate import RECHECK, Gate
from tram.sharing.pacing import Contention, Prompting

PER_KEY = {"key_prompts": 1, "prompt_tokens_per_second": 1000.0}


def big(count: int) -> list[Ticket]:
    return [Ticket("big", item=f"b{i}", prompt_seconds=1.0) for i in range(count)]


class Slots:
    def __init__(self, n: float) -> None:
        self.n = n

    def __call__(self) -> float:
        return self.n


def test_a_model_with_nothing_waiting_or_a_key_alone_is_not_paced() -> None:
    queue = FairQueue(Slots(math.inf), key_prompts=1)
    assert queue.offer(Ticket("monitor"), 0) is Verdict.START
    assert [queue.offer(t, 0).name for t in big(40)] == ["START"] * 40  # nothing waits
    alone = FairQueue(Slots(2), key_prompts=1)
    tickets = big(3)
    assert [alone.offer(t, 0).name for t in tickets] == ["START", "START", "QUEUED"]
    alone.done(tickets[0], 0.1)
    assert alone.ready(0.1) == [tickets[2]]  # waiting for a slot only: no other key


def test_saturated_a_key_is_held_at_its_limit_and_another_key_is_not() -> None:
    slots = Slots(3)
    queue = FairQueue(slots, key_prompts=1)
    small = Ticket("small", prompt_seconds=0.1)
    assert queue.offer(small, 0) is Verdict.START
    tickets = big(4)
    assert [queue.offer(t, 0).name for t in tickets] == ["START", "START", "QUEUED", "QUEUED"]
    queue.done(small, 0.2)
    assert queue.ready(0.2) == []  # a slot is free, but big has 2 prompts counting
    # big's tickets wait, held: a new one of another key starts at once
    assert queue.offer(Ticket("small", prompt_seconds=0.1), 0.3) is Verdict.START
    slots.n = 4  # one slot free; still saturated: 3 running and 2 waiting
    assert queue.next_prompt_end(0.3) == pytest.approx(1.0)
    assert queue.ready(0.9) == []
    assert queue.ready(1.0) == [tickets[2]]  # its prompts are estimated done: one more
    assert queue.next_prompt_end(1.0) == pytest.approx(2.0)  # 4 running, 1 waiting: held
    queue.done(tickets[0], 1.1)  # room for all that waits: not saturated, so not held
    assert queue.ready(1.1) == [tickets[3]]


def test_a_key_s_own_backlog_that_fits_does_not_keep_it_held() -> None:
    slots = Slots(2)
    queue = FairQueue(slots, key_prompts=1)
    assert queue.offer(Ticket("other"), 0) is Verdict.START
    tickets = big(3)
    assert [queue.offer(t, 0).name for t in tickets] == ["START", "QUEUED", "QUEUED"]
    slots.n = 10  # the burst passed: the model has room for all of it
    assert queue.ready(0.1) == tickets[1:]  # though big's prompt still counts


def test_a_held_key_s_head_does_not_hold_back_another_key_s() -> None:
    queue = FairQueue(Slots(2), key_prompts=1)
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


def test_a_held_key_holds_back_no_lower_class_and_a_waiting_key_counts_as_present() -> None:
    queue = FairQueue(Slots(2), key_prompts=1, contended_for=10.0)
    line = Ticket("bulk", cls="batch", prompt_seconds=0.1)
    tickets = [Ticket("big", prompt_seconds=100.0) for _ in range(3)]  # still counting at 30
    assert queue.offer(tickets[0], 0) is Verdict.START
    assert queue.offer(tickets[1], 0) is Verdict.START
    assert queue.offer(line, 0) is Verdict.QUEUED  # no slot
    assert queue.offer(tickets[2], 0) is Verdict.QUEUED
    queue.done(tickets[0], 30)  # long after bulk's request: only its waiting makes it present
    assert queue.ready(30) == [line]  # big's head is held (1 counting), batch is not
    queue.done(line, 30.5)
    assert queue.ready(30.5) == [tickets[2]]  # room for it, and no other key about


def test_contention_remembers_the_latest_other_key() -> None:
    seen = Contention(window=10)
    seen.seen("a", 0)
    assert not seen.contended("a", 1)
    seen.seen("b", 2)
    seen.seen("b", 3)
    seen.seen("c", 4)
    assert seen.contended("b", 5) and seen.contended("c", 5)
    assert not seen.contended("c", 14.5)  # b was last seen at 3, a long ago


def test_prompts_are_counted_until_their_estimate_or_done_and_ended_ones_are_dropped() -> None:
    prompting = Prompting()
    requests = [object() for _ in range(1000)]
    for n, request in enumerate(requests):  # a key alone: counted, never read, kept small
        prompting.add("k", n * 0.1, n * 0.1 + 0.25, request)
    assert len(prompting._entries) <= 4  # ended ones dropped as new ones came
    assert prompting.count("k", 99.9) == 3
    prompting.remove("k", requests[-1])
    prompting.remove("k", requests[-1])  # once
    assert prompting.count("k", 99.9) == 2
    assert prompting.next_end("k", 99.9) == pytest.approx(99.95)
    assert prompting.count("k", 200) == 0 and prompting.groups() == []
    assert len(prompting._entries) == 0  # nothing kept for ended prompts


@pytest.mark.parametrize("value", [0, -1])
def test_key_prompts_is_checked(value: int) -> None:
    with pytest.raises(ConfigError, match=r"sharing.queue.key_prompts.*greater than or equal"):
        parse_config({"sharing": {"queue": {"key_prompts": value}}}, "test")


def test_every_request_gets_a_prompt_estimate_when_keys_are_paced() -> None:
    [seconds] = offered_prompt_seconds(PER_KEY, RequestRecord("r1", "POST",
                                                              "/v1/chat/completions"))
    assert seconds == pytest.approx(prompt_estimate(LONG_CHAT) / 1000.0)


async def _held_waiters(gate: Gate, prompt_seconds: float) -> tuple[list[Ticket],
                                                                    list[asyncio.Future[Ticket]]]:
    """At capacity 3: another key's request and two of "big" run, two more of big wait; the
    other key's ends, so one slot is free while 2 run and 2 wait: saturated, big held."""
    other = await gate.enter("small", 1.0, "interactive", 1.0)
    running = [await gate.enter("big", 1.0, "interactive", 1.0, prompt_seconds=prompt_seconds)
               for _ in range(2)]
    waiters = [asyncio.ensure_future(gate.enter("big", 1.0, "interactive", 1.0,
                                                prompt_seconds=prompt_seconds))
               for _ in range(2)]
    await asyncio.sleep(0.02)
    gate.leave(other)
    return running, waiters


async def _leave_all(gate: Gate, running: list[Ticket],
                     waiters: list[asyncio.Future[Ticket]]) -> None:
    for ticket in running:
        gate.leave(ticket)
    for ticket in await asyncio.wait_for(asyncio.gather(*waiters), 5):
        gate.leave(ticket)


def test_the_gate_starts_a_held_key_at_its_prompt_s_estimated_end() -> None:
    async def scenario() -> tuple[bool, float]:
        gate = Gate("m", lambda: 3, SharingConfig().queue.model_copy(update=PER_KEY))
        began = time.monotonic()
        running, waiters = await _held_waiters(gate, 0.15)
        await asyncio.sleep(0.03)
        held = not any(waiter.done() for waiter in waiters)
        await asyncio.wait_for(asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED), 5)
        waited = time.monotonic() - began
        await _leave_all(gate, running, waiters)
        return held, waited
    held, waited = asyncio.run(scenario())
    assert held
    assert 0.14 <= waited < min(0.6, RECHECK)  # its timer at 0.15 s, not the 1 s recheck


def test_a_reload_that_lifts_the_pacing_starts_the_held_key_at_once() -> None:
    async def scenario() -> tuple[bool, float]:
        gate = Gate("m", lambda: 3, SharingConfig().queue.model_copy(update=PER_KEY))
        running, waiters = await _held_waiters(gate, 30.0)
        await asyncio.sleep(0.05)
        held = not any(waiter.done() for waiter in waiters)
        began = time.monotonic()
        gate.configure(SharingConfig().queue)  # the reload: keys no longer paced
        await asyncio.wait_for(asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED), 5)
        after = time.monotonic() - began
        await _leave_all(gate, running, waiters)
        return held, after
    held, after = asyncio.run(scenario())
    assert held
    assert after < 0.5  # at the reload, not at the gate's next tick


def test_a_live_gateway_holds_a_busy_key_and_lets_another_through(tmp_path: Path) -> None:
    """At `max_in_flight: 3`, held at a scripted engine: the master key's request and two of a
    busy key's run, three more of the busy key's wait. Two answers free two slots (1 running,
    3 waiting: still saturated): the busy key's next is held until its prompts are estimated
    done (0.5 s after they started), while the master key's next, sent after, goes at once."""
    engine = HeldEngine()
    prompt = "word " * 400  # ~500 tokens estimated: 0.5 s at 1,000 tokens/s
    with serve_app(engine.app) as engine_url, \
            held_gateway(tmp_path, engine_url, queue=PER_KEY, max_in_flight=3) as url:
        threads = [threading.Thread(target=chat, args=(url, AUTH, "s0"))]
        threads[0].start()
        engine.wait_arrived(1)
        _, busy = new_key(url, "busy")
        for i in range(5):
            threads.append(threading.Thread(target=chat, args=(url, busy, f"b{i} {prompt}")))
            threads[-1].start()
        engine.wait_arrived(3)
        model_view(url, lambda view: view["waiting"]["interactive"] == 3)
        engine.release(2)  # s0 and the busy key's first
        released = time.monotonic()
        threads.append(threading.Thread(target=chat, args=(url, AUTH, "s1")))
        threads[-1].start()
        engine.wait_arrived(5, timeout=15)
        engine.release(7)
        for thread in threads:
            thread.join(30)
    order = [tag.split()[0] for tag in engine.arrived]
    times = dict(zip(order, engine.arrived_at, strict=True))
    assert order[0] == "s0" and order[3] == "s1"  # s1 sent after the held ones, went first
    first, second, held = order[1], order[2], order[4]  # the busy key's, as they arrived
    assert times[held] - released > 0.2  # not at the release: held by its key's prompts
    # at their estimated end, by the gate's timer
    assert 0.45 <= times[held] - max(times[first], times[second]) < 0.85
