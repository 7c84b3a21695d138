"""Batch prompts one at a time (`sharing.queue.class_prompts`): the gate starts a paced class's
next request when the last one's prompt is estimated done, by its own timer (nothing needs to
finish), and the gateway estimates a batch line's prompt time from its prompt and
`prompt_tokens_per_second`, leaving other requests unpaced; in a live gateway, in front of a
scripted saturated engine (tests/support/held_engine.py), batch requests reach the engine
spaced by their estimate while a chat request beside them goes at once."""

from __future__ import annotations

import asyncio
import itertools
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
from tram.sharing.gate import RECHECK, Gate

PACED = {"class_prompts": {"batch": 1}, "prompt_tokens_per_second": 1000.0}


def test_the_next_paced_request_starts_when_the_last_prompt_is_estimated_done() -> None:
    async def scenario() -> tuple[float, bool]:
        gate = Gate("m", lambda: float("inf"),
                    SharingConfig().queue.model_copy(update=PACED))
        began = time.monotonic()
        first = await gate.enter("bulk", 1.0, "batch", 1.0, prompt_seconds=0.15)
        chat = await gate.enter("chat", 1.0, "interactive", 1.0)  # never paced
        second = await gate.enter("bulk", 1.0, "batch", 1.0, prompt_seconds=0.15)
        waited = time.monotonic() - began
        gate.leave(chat)
        gate.leave(second)
        return waited, first.started
    waited, first_still_running = asyncio.run(scenario())
    assert first_still_running  # nothing finished: the timer started the second
    assert 0.14 <= waited < min(0.6, RECHECK)


LONG_CHAT = {"model": "m", "messages": [{"role": "user", "content": "word " * 800}]}


def offered_prompt_seconds(queue: dict[str, object], *records: RequestRecord) -> list[float]:
    """The `prompt_seconds` the gateway's `Queues.offer` gives each request (LONG_CHAT from one
    key, in order) on a model "m" with these `sharing.queue` settings."""
    config = parse_config({"models": [{"name": "m", "upstreams": [
        {"url": "http://127.0.0.1:9/v1"}]}], "sharing": {"queue": queue}}, "test")
    registry = Registry.from_models(config.models)
    queues = Queues(registry, config.sharing)
    pool = registry.get("m")
    assert pool is not None
    chat = next(route for route in MODEL_ROUTES if route.name == "chat")
    key = Principal("key_1", is_master=False)

    async def scenario() -> list[float]:
        seconds = []
        for record in records:
            offered = queues.offer(pool, chat, key, LONG_CHAT, record)
            assert offered is not None
            seconds.append(offered[1].prompt_seconds)
        return seconds
    return asyncio.run(scenario())


def test_a_batch_line_is_paced_by_its_prompt_and_an_interactive_request_is_not() -> None:
    line = RequestRecord("r1", "POST", "/v1/chat/completions")
    line.traffic = "batch"
    batch_seconds, chat_seconds = offered_prompt_seconds(
        PACED, line, RequestRecord("r2", "POST", "/v1/chat/completions"))
    assert batch_seconds == pytest.approx(prompt_estimate(LONG_CHAT) / 1000.0)
    assert batch_seconds > 0.5 and chat_seconds == 0.0


@pytest.mark.parametrize(("queue", "message"), [
    ({"class_prompts": {"bulk": 1}}, "unknown class 'bulk'"),
    ({"class_prompts": {"batch": 0}}, "must be positive"),
    ({"prompt_tokens_per_second": 0}, "greater than 0"),
])
def test_pacing_settings_are_checked(queue: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=f"sharing.queue.*{message}"):
        parse_config({"sharing": {"queue": queue}}, "test")


def test_a_reload_that_lifts_the_pacing_starts_what_waited_for_it() -> None:
    async def scenario() -> tuple[bool, bool, float]:
        gate = Gate("m", lambda: float("inf"),
                    SharingConfig().queue.model_copy(update=PACED))
        await gate.enter("bulk", 1.0, "batch", 1.0, prompt_seconds=30.0)
        waiter = asyncio.ensure_future(gate.enter("bulk", 1.0, "batch", 1.0,
                                                  prompt_seconds=30.0))
        await asyncio.sleep(0.05)
        held = not waiter.done()
        began = time.monotonic()
        gate.configure(SharingConfig().queue)  # the reload: no pacing any more
        ticket = await asyncio.wait_for(waiter, 5)
        return held, ticket.started, time.monotonic() - began
    held, started, after = asyncio.run(scenario())
    assert held and started
    assert after < 0.5  # at the reload, not at the gate's next tick


def test_a_live_gateway_spaces_batch_prompts_and_lets_chat_through(tmp_path: Path) -> None:
    """Batch-class requests held at a scripted engine (none finishes): each reaches it one
    estimated prompt after the last; an interactive one sent beside them goes at once."""
    engine = HeldEngine()
    prompt = "word " * 400  # ~500 tokens estimated: 0.5 s at 1,000 tokens/s
    with serve_app(engine.app) as engine_url, \
            held_gateway(tmp_path, engine_url, queue=PACED) as url:
        _, bulk = new_key(url, "bulk", priority="batch")
        sent = time.monotonic()
        threads = [threading.Thread(target=chat, args=(url, bulk, f"b{i} {prompt}"))
                   for i in range(3)]
        for thread in threads:
            thread.start()
        engine.wait_arrived(1)
        chat_thread = threading.Thread(target=chat, args=(url, AUTH, "chat"))
        chat_thread.start()
        engine.wait_arrived(4, timeout=15)
        engine.release(4)
        for thread in [*threads, chat_thread]:
            thread.join(30)
    order = [tag.split()[0] for tag in engine.arrived]
    times = dict(zip(order, engine.arrived_at, strict=True))
    batch = sorted(times[tag] for tag in ("b0", "b1", "b2"))
    assert batch[0] - sent < 0.4  # the first starts at once
    # 0.5 s apart: the gate's timer at each estimated end, not its 1 s recheck
    assert all(0.45 <= later - earlier < 0.85 for earlier, later in itertools.pairwise(batch))
    assert order.index("chat") == 1  # not behind the paced batch: it went at once
