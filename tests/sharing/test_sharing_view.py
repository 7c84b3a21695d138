"""GET /admin/sharing on a live gateway, in front of a scripted saturated engine (a
fault-injection stand-in: tests/support/held_engine.py) with `max_in_flight: 1`: the model's
capacity, what the queue started and what waits by class, each contending key's name, class,
weight and share; administrators only."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.conftest import MASTER_KEY
from tests.sharing.test_gateway_queue import chat, new_key
from tests.support.held_engine import HeldEngine
from tests.support.servers import serve_app
from tram.app import create_app
from tram.config import Settings, parse_config
from tram.protocol.sharing import SharingStatus

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}


QUEUE: dict[str, Any] = {"weights": {"batch": 0.5}, "class_prompts": {"batch": 2},
                         "prompt_tokens_per_second": 8000}


@contextmanager
def held_gateway(tmp_path: Path, engine_url: str, queue: dict[str, Any] | None = None,
                 **model: Any) -> Iterator[str]:
    """A gateway in front of the engine: model "m" (with `model`'s settings) and "free";
    `queue`: its sharing.queue instead of this module's."""
    data: dict[str, Any] = {
        "models": [{"name": "m", "upstreams": [{"url": engine_url + "/v1",
                                                "served_name": "held"}], **model},
                   {"name": "free", "upstreams": [{"url": engine_url + "/v1",
                                                   "served_name": "held"}]}],
        "sharing": {"priorities": {"batch": 20}, "queue": queue or QUEUE}}
    path = tmp_path / "tram.yaml"
    path.write_text(yaml.safe_dump(data))
    settings = Settings(master_key=MASTER_KEY, master_key_source="test", config_path=path,
                        data_dir=tmp_path / "data")  # a store of its own
    with serve_app(create_app(settings, parse_config(data, str(path)))) as url:
        yield url


def sharing(url: str) -> dict[str, Any]:
    answer = httpx.get(url + "/admin/sharing", headers=AUTH)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    SharingStatus.model_validate(body)  # what the OpenAPI document says it is
    return body


def model_view(url: str, until: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        view = next(m for m in sharing(url)["data"] if m["id"] == "m")
        if until(view):
            return view
        assert time.monotonic() < deadline, view
        time.sleep(0.02)


def test_the_view_shows_the_queue_and_each_contending_key(tmp_path: Path) -> None:
    engine = HeldEngine()
    with serve_app(engine.app) as engine_url, \
            held_gateway(tmp_path, engine_url, max_in_flight=1) as url:
        first = sharing(url)
        assert first["object"] == "sharing"
        assert first["priorities"] == {"interactive": 0, "batch": 20}
        assert first["queue"]["weights"] == {"interactive": 1.0, "batch": 0.5}
        assert first["queue"]["enabled"] is True
        assert first["queue"]["class_share"] == {}  # left unset
        assert first["queue"]["class_prompts"] == {"batch": 2}
        assert first["queue"]["prompt_tokens_per_second"] == 8000
        assert first["queue"]["key_prompts"] is None  # left unset
        idle = {m["id"]: m for m in first["data"]}
        assert idle["m"] == {"id": "m", "capacity": 1, "bounded_by": "max_in_flight",
                             "in_flight": 0, "waiting": {"interactive": 0, "batch": 0},
                             "admitted": 0, "keys": []}
        assert idle["free"]["capacity"] is None and idle["free"]["bounded_by"] is None

        heavy_id, heavy = new_key(url, "heavy", weight=3)
        bulk_id, bulk = new_key(url, "bulk", priority="batch")
        threads = [threading.Thread(target=chat, args=(url, headers, tag))
                   for headers, tag in ((AUTH, "blocker"), (heavy, "h"), (bulk, "b"))]
        threads[0].start()
        engine.wait_arrived(1)
        for thread in threads[1:]:
            thread.start()
        view = model_view(url, lambda v: sum(v["waiting"].values()) == 2)
        assert view["in_flight"] == 1 and view["waiting"] == {"interactive": 1, "batch": 1}
        keys = {key["id"]: key for key in view["keys"]}
        assert keys["master"] == {"id": "master", "name": "master key", "class": "interactive",
                                  "weight": 1.0, "share": 1.0, "waiting": 0}
        assert keys[heavy_id] == {"id": heavy_id, "name": "heavy", "class": "interactive",
                                  "weight": 3.0, "share": 0.0, "waiting": 1}
        assert keys[bulk_id]["class"] == "batch" and keys[bulk_id]["weight"] == 0.5
        assert keys[bulk_id]["name"] == "bulk" and keys[bulk_id]["waiting"] == 1

        engine.release(3)
        for thread in threads:
            thread.join(30)
        view = model_view(url, lambda v: v["in_flight"] == 0)
        assert view["admitted"] == 2 and sum(view["waiting"].values()) == 0
        shares = {key["id"]: key["share"] for key in view["keys"]}
        assert set(shares) == {"master", heavy_id, bulk_id}
        assert abs(sum(shares.values()) - 1) < 0.01 and shares[heavy_id] > 0


def test_the_view_is_for_administrators_only(tmp_path: Path) -> None:
    engine = HeldEngine()
    with serve_app(engine.app) as engine_url, held_gateway(tmp_path, engine_url) as url:
        _, plain = new_key(url, "plain")
        refused = httpx.get(url + "/admin/sharing", headers=plain)
        assert refused.status_code == 403
        assert refused.json()["error"]["message"]  # OpenAI's shape
        assert httpx.get(url + "/admin/sharing").status_code == 401
        _, admin = new_key(url, "ops", admin=True)
        assert httpx.get(url + "/admin/sharing", headers=admin).status_code == 200
