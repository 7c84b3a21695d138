"""A client that goes away while its request waits in the fair queue of a live gateway (a
scripted saturated engine at `max_in_flight: 1`, a fault-injection stand-in:
tests/support/held_engine.py): its request leaves the queue (depth back to 0 in /metrics),
never reaches the engine, and its slot is not leaked: the next request still starts when the
blocker ends."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import orjson

from tests.conftest import MASTER_KEY
from tests.sharing.test_gateway_queue import chat, metric, new_key, wait_depth
from tests.sharing.test_sharing_view import held_gateway, model_view
from tests.support.held_engine import HeldEngine
from tests.support.raw_http import connect
from tests.support.servers import serve_app

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}


def raw_chat(key: str, tag: str) -> bytes:
    body = orjson.dumps({"model": "m", "max_tokens": 16,
                         "messages": [{"role": "user", "content": tag}]})
    return (b"POST /v1/chat/completions HTTP/1.1\r\nhost: tram\r\n"
            b"authorization: Bearer " + key.encode() + b"\r\n"
            b"content-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def test_a_client_that_leaves_the_queue_frees_its_place(tmp_path: Path) -> None:
    engine = HeldEngine()
    with serve_app(engine.app) as engine_url, \
            held_gateway(tmp_path, engine_url, max_in_flight=1) as url:
        gone_id, gone = new_key(url, "gone")
        blocker = threading.Thread(target=chat, args=(url, AUTH, "blocker"))
        blocker.start()
        engine.wait_arrived(1)
        sock = connect(url)
        sock.sendall(raw_chat(gone["Authorization"].split()[1], "gone"))
        wait_depth(url, 1)
        sock.close()  # the client goes away while queued
        deadline = time.monotonic() + 10
        while metric(url, "tram_queue_depth", model="m", **{"class": "interactive"}) != 0:
            assert time.monotonic() < deadline, "the request stayed in the queue"
            time.sleep(0.02)
        view = model_view(url, lambda v: v["waiting"]["interactive"] == 0)
        assert view["in_flight"] == 1  # the blocker's slot only
        assert all(key["waiting"] == 0 for key in view["keys"])

        answer: list[httpx.Response] = []
        _, next_key = new_key(url, "next")
        waiter = threading.Thread(target=lambda: answer.append(chat(url, next_key, "next")))
        waiter.start()
        wait_depth(url, 1)
        engine.release()  # the blocker ends: the next one starts, the gone one never does
        assert engine.wait_arrived(2)[1] == "next"
        engine.release(10)
        waiter.join(30)
        blocker.join(30)
        assert answer[0].status_code == 200
        assert engine.arrived == ["blocker", "next"]
        view = model_view(url, lambda v: v["in_flight"] == 0)
        assert view["admitted"] == 1 and gone_id not in {
            key["id"] for key in view["keys"] if key["share"] > 0}
