"""Key administration: one service behind the admin API and `tram keys`, so both store the
same keys for the same request and refuse the same values with the same words; and its rules
of who may change whom (only the master key touches an admin key, bar one revoking itself)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import GatewayFactory
from tests.support.keys import chat
from tram.auth.principal import Principal
from tram.cli import main
from tram.config import Settings
from tram.errors import AdminRequired, InvalidRequest
from tram.keys.service import KeyAdmin, operator
from tram.protocol.keys import KeyCreate, KeyUpdate
from tram.store.db import Database, database_url
from tram.store.keys import KeyStore


def _as_key(made: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {made['key']}"}


def test_an_admin_key_cannot_revoke_or_expire_another_admin_key(gateway: GatewayFactory,
                                                                 auth: dict) -> None:
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).isoformat()
    with gateway() as url:
        def make(name: str, admin: bool) -> dict[str, Any]:
            made = httpx.post(url + "/admin/keys", headers=auth,
                              json={"name": name, "admin": admin})
            assert made.status_code == 201, made.text
            return made.json()

        first, second, app = make("ops-a", True), make("ops-b", True), make("app", False)
        as_first = _as_key(first)
        revoke_other = httpx.delete(url + f"/admin/keys/{second['id']}", headers=as_first)
        expire_other = httpx.patch(url + f"/admin/keys/{second['id']}", headers=as_first,
                                   json={"expires_at": past})
        by_name = httpx.delete(url + "/admin/keys/ops-b", headers=as_first)
        lift_own = httpx.patch(url + f"/admin/keys/{first['id']}", headers=as_first,
                               json={"rpm": None, "expires_at": None})
        second_works = httpx.get(url + "/admin/keys", headers=_as_key(second))
        # Keys without admin access are an admin key's to manage.
        limit_app = httpx.patch(url + f"/admin/keys/{app['id']}", headers=as_first,
                                json={"rpm": 5})
        revoke_app = httpx.delete(url + f"/admin/keys/{app['id']}", headers=as_first)
        # The master key may revoke any key; an admin key may revoke itself.
        master_revokes = httpx.delete(url + f"/admin/keys/{second['id']}", headers=auth)
        revoke_own = httpx.delete(url + f"/admin/keys/{first['id']}", headers=as_first)
        first_after = chat(url, as_first)
    for refused in (revoke_other, expire_other, by_name, lift_own):
        assert refused.status_code == 403, refused.text
        error = refused.json()["error"]
        assert error["type"] == "permission_error" and error["code"] == "insufficient_permissions"
        assert "Only the master key may" in error["message"] and error["param"] == "key_id"
    assert "revoke an admin key ('ops-b'" in revoke_other.json()["error"]["message"]
    assert second_works.status_code == 200  # neither revoked nor expired
    assert limit_app.status_code == 200 and limit_app.json()["rpm"] == 5
    assert revoke_app.json()["status"] == "revoked"
    assert master_revokes.status_code == 200 and master_revokes.json()["status"] == "revoked"
    assert revoke_own.status_code == 200 and revoke_own.json()["status"] == "revoked"
    assert first_after.status_code == 401


@pytest.fixture
async def keys(tmp_path: Path) -> AsyncIterator[KeyStore]:
    database = Database(database_url(None, tmp_path))
    await database.migrate()
    yield KeyStore(database)
    await database.aclose()


async def test_who_may_change_whom(keys: KeyStore) -> None:
    """The rules on the service itself: every actor against every kind of key."""
    service = KeyAdmin(keys)
    master = operator()
    admin_a, _ = await service.create(master, KeyCreate(name="a", admin=True))
    admin_b, _ = await service.create(master, KeyCreate(name="b", admin=True))
    plain, _ = await service.create(master, KeyCreate(name="p"))
    as_a = Principal(key_id=admin_a.id, is_master=False, is_admin=True)
    as_plain = Principal(key_id=plain.id, is_master=False)
    change = KeyUpdate(rpm=3)

    for attempt in (service.update(as_a, admin_b.id, change), service.revoke(as_a, admin_b.id),
                    service.update(as_a, admin_a.id, change),
                    service.create(as_a, KeyCreate(name="x", admin=False)),
                    service.update(as_a, plain.id, KeyUpdate(admin=True)),
                    service.list(as_plain), service.revoke(as_plain, plain.id)):
        with pytest.raises(AdminRequired):
            await attempt
    assert (await service.update(as_a, plain.id, change)).limits.rpm == 3
    made, _ = await service.create(as_a, KeyCreate(name="made-by-a"))
    assert not made.is_admin
    assert (await service.update(master, admin_b.id, change)).limits.rpm == 3
    assert (await service.revoke(as_a, admin_a.id)).status() == "revoked"
    assert (await service.revoke(master, admin_b.id)).status() == "revoked"


async def test_one_budget_rule_for_create_and_update(keys: KeyStore) -> None:
    service = KeyAdmin(keys)
    master = operator()
    made, _ = await service.create(master, KeyCreate(name="k", budget_tokens=10))
    assert made.limits.budget_period == "month"
    with pytest.raises(InvalidRequest) as refused:
        await service.create(master, KeyCreate(name="k", budget_period="day"))
    assert refused.value.param == "budget_period"
    plain, _ = await service.create(master, KeyCreate(name="plain"))
    assert (await service.update(master, plain.id, KeyUpdate(budget_tokens=5))
            ).limits.budget_period == "month"
    daily = await service.update(master, plain.id, KeyUpdate(budget_period="day"))
    assert (daily.limits.budget_tokens, daily.limits.budget_period) == (5, "day")
    removed = await service.update(master, plain.id, KeyUpdate(budget_tokens=None))
    assert (removed.limits.budget_tokens, removed.limits.budget_period) == (None, None)
    with pytest.raises(InvalidRequest):
        await service.update(master, plain.id, KeyUpdate(budget_period="week"))


@pytest.fixture
def cli_on(settings: Settings, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`tram keys` run in this process on the store of the test's gateway."""
    for name in ("TRAM_DATABASE_URL", "TRAM_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TRAM_DATA_DIR", str(settings.data_dir))
    monkeypatch.chdir(tmp_path)
    yield


def _comparable(record: dict[str, Any]) -> dict[str, Any]:
    """What an operation decides: everything but what is new for every key."""
    times = ("created_at", "expires_at", "revoked_at")
    skip = {"id", "key_hint", "key", *times}
    return {name: value for name, value in record.items() if name not in skip} | {
        name: record[name] is not None for name in times}


def test_the_cli_and_the_api_give_the_same_results(gateway: GatewayFactory, auth: dict,
                                                  cli_on: None,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    def cli(*args: str) -> tuple[int, Any]:
        code = main(["keys", *args])
        out = capsys.readouterr()
        return code, orjson.loads(out.out) if code == 0 else out.err.strip()

    def api(method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        answer = httpx.request(method, url + path, headers=auth, json=body)
        data = answer.json()
        return answer.status_code, data["error"]["message"] if "error" in data else data

    creations = [
        ({"budget_tokens": 100}, ["--budget-tokens", "100"]),
        ({"owner": "team", "models": ["qwen-text"], "rpm": 5, "admin": True,
          "budget_tokens": 9, "budget_period": "week"},
         ["--owner", "team", "--model", "qwen-text", "--rpm", "5", "--admin",
          "--budget-tokens", "9", "--budget-period", "week"]),
        ({"expires_at": (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).isoformat()},
         ["--expires-in-days", "2"]),
    ]
    refusals = [({"budget_period": "day"}, ["--budget-period", "day"]),
                ({"rpm": 2**40}, ["--rpm", str(2**40)]),
                ({"tpm": 0}, ["--tpm", "0"])]
    updates = [({"budget_tokens": 50}, ["--budget-tokens", "50"]),
               ({"budget_period": "day"}, ["--budget-period", "day"]),
               ({"budget_tokens": None, "rpm": None}, ["--budget-tokens", "0", "--rpm", "0"]),
               ({"models": None}, ["--all-models"])]
    with gateway() as url:
        for body, flags in creations:
            (status, by_api), (code, by_cli) = (api("POST", "/admin/keys", {"name": "k", **body}),
                                                cli("create", "--name", "k", *flags))
            assert (status, code) == (201, 0), (by_api, by_cli)
            assert _comparable(by_cli) == _comparable(by_api)
        for body, flags in refusals:
            (status, by_api), (code, by_cli) = (api("POST", "/admin/keys", {"name": "k", **body}),
                                                cli("create", "--name", "k", *flags))
            assert (status, code) == (400, 2) and by_cli == f"tram: {by_api}", body
        pair = [api("POST", "/admin/keys", {"name": "k2", "rpm": 7})[1]["id"],
                cli("create", "--name", "k2", "--rpm", "7")[1]["id"]]
        for body, flags in updates:
            (status, by_api), (code, by_cli) = (api("PATCH", f"/admin/keys/{pair[0]}", body),
                                                cli("update", pair[1], *flags))
            assert (status, code) == (200, 0), (by_api, by_cli)
            assert _comparable(by_cli) == _comparable(by_api), body
        (status, by_api), (code, by_cli) = (api("DELETE", f"/admin/keys/{pair[0]}"),
                                            cli("revoke", pair[1]))
        assert (status, code) == (200, 0) and by_api["status"] == "revoked"
        assert _comparable(by_cli) == _comparable(by_api)
        (status, by_api), (code, by_cli) = api("GET", "/admin/keys/nobody"), cli("show", "nobody")
        assert (status, code) == (404, 1) and by_cli == f"tram: {by_api}"
        listed = api("GET", "/admin/keys")[1]["data"]
    stored = {(k["name"], k["budget_tokens"], k["budget_period"]) for k in listed}
    assert ("k", 100, "month") in stored and ("k", 9, "week") in stored
    assert [k["name"] for k in listed].count("k") == 2 * len(creations)  # no refusal stored
