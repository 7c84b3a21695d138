"""Per-key limits at admission: rpm, tpm from the engine's counts, concurrency, token budget."""

from __future__ import annotations

import datetime as dt
import threading
import time

import httpx
import pytest

from tests.conftest import GatewayFactory
from tests.support.fault_engine import EngineLog
from tests.support.keys import chat, key_with
from tram.errors import InsufficientQuota, RateLimited
from tram.limits.base import KeyLimits, period_start
from tram.limits.memory import MemoryLimiter


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
    asked: list[tuple[str, dt.datetime | None]] = []
    stored = [95]  # what the usage store holds for the key

    async def recorded(key_id: str, since: dt.datetime | None) -> int:
        asked.append((key_id, since))
        return stored[0]

    limiter = MemoryLimiter(recorded, clock=lambda: now[0])
    limits = KeyLimits(rpm=2, max_total_tokens=100)
    await limiter.release(await limiter.admit("k", limits, 0), 0)
    await limiter.release(await limiter.admit("k", limits, 0), 0)
    with pytest.raises(RateLimited) as limited:
        await limiter.admit("k", limits, 0)
    assert limited.value.retry_after == 60
    now[0] += 25
    assert asked == [("k", None)]  # read once, then counted in memory
    now[0] += 35.5
    ticket = await limiter.admit("k", limits, 0)  # the window slid
    await limiter.release(ticket, 5)  # counted at once...
    with pytest.raises(InsufficientQuota):
        await limiter.admit("k", limits, 0)
    stored[0] += 5  # ...and by then in the store, which later reads agree with
    now[0] += 61
    with pytest.raises(InsufficientQuota):
        await limiter.admit("k", limits, 0)
    assert len(asked) == 3


async def test_in_flight_requests_hold_their_ceiling_against_the_budget() -> None:
    async def recorded(key_id: str, since: dt.datetime | None) -> int:
        return 0

    limiter = MemoryLimiter(recorded)
    limits = KeyLimits(max_total_tokens=1000)
    first = await limiter.admit("k", limits, 600)
    second = await limiter.admit("k", limits, 600)  # 0 used + 600 held < 1000
    with pytest.raises(InsufficientQuota):
        await limiter.admit("k", limits, 10)  # 1200 held: nothing may start
    await limiter.release(first, 50)
    await limiter.release(second, 50)
    third = await limiter.admit("k", limits, 600)  # 100 used, nothing held
    await limiter.release(third, 0)


async def test_a_monthly_budget_renews_at_the_start_of_the_month() -> None:
    wall = [dt.datetime(2026, 11, 30, 23, 59, tzinfo=dt.UTC)]
    asked: list[dt.datetime | None] = []

    async def recorded(key_id: str, since: dt.datetime | None) -> int:
        asked.append(since)
        return 0

    limiter = MemoryLimiter(recorded, wall_clock=lambda: wall[0])
    limits = KeyLimits(budget_tokens=10, budget_period="month")
    await limiter.release(await limiter.admit("k", limits, 1), 12)
    with pytest.raises(InsufficientQuota) as spent:
        await limiter.admit("k", limits, 1)
    assert "monthly budget of 10 tokens" in spent.value.message
    assert "renews at 2026-12-01T00:00:00Z" in spent.value.message
    wall[0] = dt.datetime(2026, 12, 1, 0, 0, 1, tzinfo=dt.UTC)
    await limiter.admit("k", limits, 1)  # a new month, a new counter from the store
    assert asked == [dt.datetime(2026, 11, 1, tzinfo=dt.UTC),
                     dt.datetime(2026, 12, 1, tzinfo=dt.UTC)]


def test_period_starts() -> None:
    wednesday = dt.datetime(2026, 11, 25, 15, 30, tzinfo=dt.UTC)
    assert period_start("day", wednesday) == (dt.datetime(2026, 11, 25, tzinfo=dt.UTC),
                                              dt.datetime(2026, 11, 26, tzinfo=dt.UTC))
    assert period_start("week", wednesday)[0] == dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
    assert period_start("month", dt.datetime(2026, 12, 9, tzinfo=dt.UTC)) == (
        dt.datetime(2026, 12, 1, tzinfo=dt.UTC), dt.datetime(2027, 1, 1, tzinfo=dt.UTC))


def test_period_budget_through_the_api(gateway: GatewayFactory, auth: dict) -> None:
    with gateway() as url:
        made = httpx.post(url + "/admin/keys", headers=auth,
                          json={"name": "daily", "budget_tokens": 10, "budget_period": "day"})
        headers = {"Authorization": f"Bearer {made.json()['key']}"}
        assert chat(url, headers).status_code == 200
        # 9 used < 10 and nothing else in flight: admitted (it may overshoot, by one request).
        assert chat(url, headers).status_code == 200
        spent = chat(url, headers)
        no_tokens = httpx.post(url + "/admin/keys", headers=auth,
                               json={"name": "bad", "budget_period": "day"})
    assert made.json()["budget_tokens"] == 10 and made.json()["budget_period"] == "day"
    assert spent.status_code == 429 and spent.json()["error"]["code"] == "insufficient_quota"
    assert "daily budget of 10 tokens; it renews at " in spent.json()["error"]["message"]
    assert no_tokens.status_code == 400 and no_tokens.json()["error"]["param"] == "budget_period"


def test_admin_keys_manage_keys_but_only_the_master_grants_admin(
        gateway: GatewayFactory, auth: dict) -> None:
    with gateway() as url:
        admin = httpx.post(url + "/admin/keys", headers=auth,
                           json={"name": "ops", "admin": True}).json()
        as_admin = {"Authorization": f"Bearer {admin['key']}"}
        made = httpx.post(url + "/admin/keys", headers=as_admin, json={"name": "app"})
        listed = httpx.get(url + "/admin/keys", headers=as_admin)
        usage = httpx.get(url + "/admin/usage", headers=as_admin)
        escalate = httpx.post(url + "/admin/keys", headers=as_admin,
                              json={"name": "x", "admin": True})
        promote = httpx.patch(url + f"/admin/keys/{made.json()['id']}", headers=as_admin,
                              json={"admin": True})
        as_app = {"Authorization": f"Bearer {made.json()['key']}"}
        app_admin = httpx.get(url + "/admin/keys", headers=as_app)
        chat_as_admin = chat(url, as_admin)
    assert admin["admin"] is True and made.status_code == 201 and made.json()["admin"] is False
    assert listed.status_code == 200 and usage.status_code == 200
    for refused in (escalate, promote, app_admin):
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["type"] == "permission_error"
    assert chat_as_admin.status_code == 200


async def test_budget_counters_are_read_again_from_the_store() -> None:
    """Other workers' usage reaches this one's budget through the store, within RELOAD."""
    now = [0.0]
    store = [0]

    async def recorded(key_id: str, since: dt.datetime | None) -> int:
        return store[0]

    limiter = MemoryLimiter(recorded, clock=lambda: now[0])
    limits = KeyLimits(max_total_tokens=100)
    await limiter.release(await limiter.admit("k", limits, 0), 10)
    store[0] = 150  # another worker spent the rest meanwhile
    await limiter.release(await limiter.admit("k", limits, 0), 0)  # not re-read yet
    now[0] += 31
    with pytest.raises(InsufficientQuota):
        await limiter.admit("k", limits, 0)
