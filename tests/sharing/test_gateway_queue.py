"""The fair queue in a live gateway, in front of a scripted saturated engine (a fault-injection
stand-in: tests/support/held_engine.py) with `max_in_flight: 1`: the order the engine gets
queued requests is the weighted fair order, bounds give 429 model_overloaded with
Retry-After, /metrics shows the shares."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.conftest import MASTER_KEY
from tests.support.held_engine import HeldEngine
from tests.support.servers import serve_app
from tram.app import create_app
from tram.config import Settings, parse_config
from tram.sharing.fairqueue import FairQueue, Ticket, Verdict

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}


@contextmanager
def gateway(tmp_path: Path, engine_url: str) -> Iterator[str]:
    data: dict[str, Any] = {
        "models": [{"name": "m", "max_in_flight": 1,
                    "upstreams": [{"url": engine_url + "/v1", "served_name": "held"}]}],
        "sharing": {"queue": {"max_per_key": 6,
                              "max_wait_seconds": {"interactive": 30, "batch": 1}}}}
    path = tmp_path / "tram.yaml"
    path.write_text(yaml.safe_dump(data))
    settings = Settings(master_key=MASTER_KEY, master_key_source="test", config_path=path,
                        data_dir=tmp_path / "data")
    with serve_app(create_app(settings, parse_config(data, str(path)))) as url:
        yield url


def new_key(url: str, name: str, **fields: object) -> tuple[str, dict[str, str]]:
    made = httpx.post(url + "/admin/keys", headers=AUTH, json={"name": name, **fields})
    assert made.status_code == 201, made.text
    return made.json()["id"], {"Authorization": f"Bearer {made.json()['key']}"}


def chat(url: str, headers: dict[str, str], tag: str) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", headers=headers, timeout=60,
                      json={"model": "m", "messages": [{"role": "user", "content": tag}],
                            "max_tokens": 16})


def metric(url: str, name: str, **labels: str) -> float | None:
    for line in httpx.get(url + "/metrics", headers=AUTH).text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def wait_depth(url: str, depth: float) -> None:
    deadline = time.monotonic() + 10
    while (metric(url, "tram_queue_depth", model="m", **{"class": "interactive"}) or 0) < depth:
        assert time.monotonic() < deadline
        time.sleep(0.02)


def expected_order(offers: list[tuple[str, float]]) -> list[str]:
    """The reference: the same offers through the queue alone, one slot."""
    queue = FairQueue(lambda: 1)
    running: list[Ticket] = []
    for tag, weight in [("blocker", 1.0), *offers]:
        ticket = Ticket(tag[0], weight, item=tag)
        if queue.offer(ticket, 0) is Verdict.START:
            running.append(ticket)
    order = []
    while running:
        queue.done(running.pop(0), 0)
        running += queue.ready(0)
        order += [t.item for t in running[-1:]] if running else []
    return order


def test_the_engine_gets_queued_requests_in_weighted_fair_order(tmp_path: Path) -> None:
    engine = HeldEngine()
    with serve_app(engine.app) as engine_url, gateway(tmp_path, engine_url) as url:
        light_id, light = new_key(url, "light", weight=1)
        heavy_id, heavy = new_key(url, "heavy", weight=3)
        _, slow = new_key(url, "bulk", priority="batch")
        answers: dict[str, httpx.Response] = {}

        def send(headers: dict[str, str], tag: str) -> None:
            answers[tag] = chat(url, headers, tag)

        threads = [threading.Thread(target=send, args=(AUTH, "blocker"))]
        threads[0].start()
        engine.wait_arrived(1)
        offers = [(f"h{i}", 3.0) for i in range(6)] + [(f"l{i}", 1.0) for i in range(6)]
        for depth, (tag, _) in enumerate(offers, 1):
            threads.append(threading.Thread(target=send,
                                            args=(heavy if tag[0] == "h" else light, tag)))
            threads[-1].start()
            wait_depth(url, depth)  # queued in this order
        full = chat(url, heavy, "h-too-many")  # its 7th: over max_per_key
        assert full.status_code == 429 and full.headers["retry-after"]
        assert full.json()["error"]["code"] == "model_overloaded"
        timed_out = chat(url, slow, "bulk")  # batch waits behind interactive, bound 1 s
        assert timed_out.status_code == 429 and timed_out.headers["retry-after"]
        assert timed_out.json()["error"]["code"] == "model_overloaded"
        for count in range(2, 6):
            engine.release()
            engine.wait_arrived(count)
        first = engine.arrived[1:5]
        assert sorted(t[0] for t in first) == ["h", "h", "h", "l"]  # 3 : 1
        assert metric(url, "tram_fair_share_weight", model="m", key=heavy_id) == 3.0
        heavy_share = metric(url, "tram_fair_share_ratio", model="m", key=heavy_id)
        light_share = metric(url, "tram_fair_share_ratio", model="m", key=light_id)
        assert heavy_share is not None and light_share is not None
        assert heavy_share > 2 * light_share
        engine.release(100)
        for thread in threads:
            thread.join(30)
        assert engine.arrived == ["blocker", *expected_order(offers)]
        assert all(answer.status_code == 200 for answer in answers.values())
        assert metric(url, "tram_rejected_total", model="m", reason="queue_full") == 1
        assert metric(url, "tram_rejected_total", model="m", reason="queue_timeout") == 1
        assert metric(url, "tram_queue_admitted_total", model="m") == 12
