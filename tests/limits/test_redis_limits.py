"""Limits shared through a real Redis server: across gateway instances, exact under
concurrency, leases of a dead gateway expiring, and both failure modes when Redis is down."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import httpx
import pytest

from tests.conftest import GatewayFactory
from tests.support.keys import chat, key_with
from tests.support.redis_server import RedisServer
from tram.errors import InsufficientQuota, LimitsUnavailable, RateLimited
from tram.limits.base import KeyLimits
from tram.limits.redis import RedisLimiter
from tram.transport.resp import RedisUnavailable, ReplyError, RespClient


def test_rpm_is_shared_by_two_gateway_instances(gateway: GatewayFactory, auth: dict,
                                                redis_server: RedisServer) -> None:
    limits = {"redis_url": redis_server.url}
    with gateway(limits=limits) as one, gateway(limits=limits) as two:
        headers = key_with(one, auth, rpm=4)
        statuses = [chat(url, headers).status_code for url in (one, two, one, two)]
        refused = [chat(url, headers) for url in (one, two)]
    assert statuses == [200, 200, 200, 200]
    # Each instance alone saw only two requests: only shared counters refuse these.
    assert [r.status_code for r in refused] == [429, 429]
    assert refused[1].json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(refused[1].headers["retry-after"]) <= 60


def test_budget_is_exact_under_concurrent_requests_on_two_instances(
        gateway: GatewayFactory, auth: dict, redis_server: RedisServer) -> None:
    # A generous timeout: both gateways share this test process's GIL with 16 client threads,
    # and a reply late enough to fail open would be counted locally instead.
    limits = {"redis_url": redis_server.url, "redis_timeout": 10}
    with gateway(limits=limits) as one, gateway(limits=limits) as two:
        made = httpx.post(one + "/admin/keys", headers=auth,
                          json={"name": "budget", "max_total_tokens": 1_000_000}).json()
        headers = {"Authorization": f"Bearer {made['key']}"}
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda i: chat((one, two)[i % 2], headers), range(60)))
        assert all(a.status_code == 200 for a in answers)

        async def counter() -> int:
            client = RespClient(redis_server.url)
            try:
                value = await client.call("HGET", f"tram:{{{made['id']}}}:budget", "total")
                return int(value or 0)
            finally:
                await client.aclose()

        # 60 answers of 9 tokens each, counted from both instances with no lost update.
        assert asyncio.run(counter()) == 60 * 9


def test_concurrency_is_shared_and_a_dead_gateways_leases_expire(
        redis_server: RedisServer) -> None:
    async def scenario() -> None:
        async def recorded(key_id: str, since: dt.datetime | None) -> int:
            return 0

        limits = KeyLimits(max_concurrency=2)
        crashed = RedisLimiter(RespClient(redis_server.url), recorded, lease_ttl=0.6)
        alive = RedisLimiter(RespClient(redis_server.url), recorded, lease_ttl=0.6)
        renewing = asyncio.create_task(alive.run())
        try:
            held = await alive.admit("k", limits, 0)
            await crashed.admit("k", limits, 0)  # then "killed": never released nor renewed
            with pytest.raises(RateLimited) as limited:
                await alive.admit("k", limits, 0)
            assert "2 requests in flight" in limited.value.message
            await asyncio.sleep(1.0)
            # The dead one's lease expired; the live one's was renewed and still counts.
            second = await alive.admit("k", limits, 0)
            with pytest.raises(RateLimited):
                await alive.admit("k", limits, 0)
            await alive.release(held, 0)
            await alive.release(second, 0)
            await alive.release(await alive.admit("k", limits, 0), 0)
        finally:
            renewing.cancel()
            await crashed.aclose()
            await alive.aclose()

    asyncio.run(scenario())


def test_period_budget_loaded_once_from_the_store_then_counted_in_redis(
        redis_server: RedisServer) -> None:
    asked: list[dt.datetime | None] = []

    async def recorded(key_id: str, since: dt.datetime | None) -> int:
        asked.append(since)
        await asyncio.sleep(0.05)  # concurrent admissions race to load it: one value wins
        return 90

    async def scenario() -> None:
        limiters = [RedisLimiter(RespClient(redis_server.url), recorded) for _ in range(2)]
        limits = KeyLimits(budget_tokens=100, budget_period="day")
        try:
            tickets = await asyncio.gather(*(lim.admit("k", limits, 1) for lim in limiters))
            for limiter, ticket in zip(limiters, tickets, strict=True):
                await limiter.release(ticket, 6)
            with pytest.raises(InsufficientQuota) as spent:
                await limiters[0].admit("k", limits, 1)  # 90 + 12 >= 100
            assert "daily budget of 100 tokens" in spent.value.message
        finally:
            for limiter in limiters:
                await limiter.aclose()

    asyncio.run(scenario())
    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    assert set(asked) == {today}


@pytest.mark.parametrize("mode", ["open", "closed"])
def test_redis_down_fails_open_or_closed_as_configured(
        gateway: GatewayFactory, auth: dict, redis_server: RedisServer, mode: str) -> None:
    limits = {"redis_url": redis_server.url, "on_redis_error": mode, "redis_timeout": 0.2}
    with gateway(limits=limits) as url:
        headers = key_with(url, auth, rpm=2)
        unlimited = key_with(url, auth)
        assert chat(url, headers).status_code == 200
        redis_server.stop()
        started = time.perf_counter()
        during = [chat(url, headers) for _ in range(3)]
        elapsed = time.perf_counter() - started
        master, plain = chat(url, auth), chat(url, unlimited)
        redis_server.start()  # back, empty: counting starts again in Redis
        time.sleep(2.2)  # Redis is retried after 2 s, not on every request
        after = [chat(url, headers).status_code for _ in range(3)]
    assert master.status_code == 200 and plain.status_code == 200  # never refused
    assert elapsed < 3  # an outage costs at most the client timeout, once per retry period
    if mode == "open":
        # Served, and still limited, by this process's own counters (rpm 2, counted afresh).
        assert [r.status_code for r in during] == [200, 200, 429]
    else:
        assert {r.status_code for r in during} == {503}
        assert during[0].json()["error"]["code"] == "limits_unavailable"
        assert during[0].headers["retry-after"] == "2"
    assert after == [200, 200, 429]


def test_unreachable_redis_closed_mode_unit(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        async def recorded(key_id: str, since: dt.datetime | None) -> int:
            return 0

        redis_server.stop()
        limiter = RedisLimiter(RespClient(redis_server.url, timeout=0.2), recorded,
                               on_error="closed")
        try:
            with pytest.raises(LimitsUnavailable):
                await limiter.admit("k", KeyLimits(rpm=1), 0)
        finally:
            await limiter.aclose()

    asyncio.run(scenario())


def test_gateways_share_nothing_without_redis(gateway: GatewayFactory, auth: dict) -> None:
    """The control for the first test: without Redis, each instance counts on its own."""
    with ExitStack() as stack:
        one, two = (stack.enter_context(gateway()) for _ in range(2))
        headers = key_with(one, auth, rpm=2)
        statuses = [chat(url, headers).status_code for url in (one, two, one, two)]
    assert statuses == [200, 200, 200, 200]


def test_resp_client_pipelines_reconnects_and_bounds_each_call(
        redis_server: RedisServer) -> None:
    async def scenario() -> None:
        client = RespClient(redis_server.url.replace("/0", "/3"), timeout=0.3)
        try:
            # Many commands in flight on one connection: each gets its own reply, in order.
            replies = await asyncio.gather(*(client.call("INCR", "n") for _ in range(200)))
            assert sorted(replies) == list(range(1, 201))
            assert await client.call("GET", "n") == b"200"
            with pytest.raises(ReplyError):
                await client.call("INCR", "n", "too-many-args")
            redis_server.stop()
            with pytest.raises(RedisUnavailable):
                await client.call("GET", "n")
            redis_server.start()  # empty again: a new connection, database 3 selected again
            assert await client.call("SET", "n", 5) == b"OK"
            assert await client.call("GET", "n") == b"5"
            assert await client.call("DBSIZE") == 1
        finally:
            await client.aclose()

    asyncio.run(scenario())
