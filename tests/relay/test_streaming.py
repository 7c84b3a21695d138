"""SSE relay: order, alias rewriting, [DONE] last, no buffering, failures mid-stream, cancellation."""

from __future__ import annotations

import time

import httpx
import orjson

from tests.conftest import GatewayFactory
from tests.support.fault_engine import EngineLog

USER = [{"role": "user", "content": "hi"}]


def stream_events(url: str, auth: dict, body: dict) -> tuple[httpx.Response, list[bytes]]:
    events: list[bytes] = []
    with httpx.stream("POST", url + "/v1/chat/completions", headers=auth, json=body,
                      timeout=30) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(line[6:].encode())
    return response, events


def test_chunks_arrive_in_order_with_the_alias_and_done_last(gateway: GatewayFactory,
                                                             auth: dict) -> None:
    with gateway() as url:
        response, events = stream_events(url, auth, {"model": "m-stream", "messages": USER,
                                                     "stream": True, "chunks": 40})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert events[-1] == b"[DONE]"
    assert events.count(b"[DONE]") == 1
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert all(c["model"] == "m-stream" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == "".join(f"t{i} " for i in range(40))
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_chunks_are_relayed_as_they_come_not_buffered(gateway: GatewayFactory, auth: dict,
                                                      engine_log: EngineLog) -> None:
    """The slow engine needs 10 s for its whole answer; the first chunks must arrive at once."""
    with gateway() as url:
        started = time.monotonic()
        with httpx.stream("POST", url + "/v1/chat/completions", headers=auth, timeout=30,
                          json={"model": "m-slow-stream", "messages": USER, "stream": True}) as r:
            lines = r.iter_lines()
            first = next(line for line in lines if line.startswith("data: "))
            first_at = time.monotonic() - started
            second = next(line for line in lines if line.startswith("data: "))
    assert first_at < 1.0
    assert orjson.loads(first[6:])["model"] == "m-slow-stream"
    assert orjson.loads(second[6:])["choices"][0]["delta"]["content"] == "t1 "


def test_engine_dying_mid_stream_ends_with_an_error_event_then_done(gateway: GatewayFactory,
                                                                    auth: dict) -> None:
    with gateway() as url:
        response, events = stream_events(url, auth, {"model": "m-cut-stream", "messages": USER,
                                                     "stream": True})
    assert response.status_code == 200
    assert [orjson.loads(e)["choices"][0]["delta"]["content"] for e in events[:2]] == ["a", "b"]
    error = orjson.loads(events[2])["error"]
    assert error["type"] == "upstream_error" and error["code"] == "bad_gateway"
    assert events[3:] == [b"[DONE]"]


def test_engine_going_silent_mid_stream_gives_a_timeout_event(gateway: GatewayFactory,
                                                              auth: dict) -> None:
    with gateway(timeouts={"idle": 0.5, "first_byte": 5}) as url:
        started = time.monotonic()
        _, events = stream_events(url, auth, {"model": "m-idle-stream", "messages": USER,
                                              "stream": True})
    assert time.monotonic() - started < 3
    error = orjson.loads(events[1])["error"]
    assert error["code"] == "engine_timeout" and "0.5s" in error["message"]
    assert events[-1] == b"[DONE]"


def test_stream_that_cannot_start_is_a_plain_json_error(gateway: GatewayFactory, auth: dict) -> None:
    with gateway() as url:
        response = httpx.post(url + "/v1/chat/completions", headers=auth, timeout=30,
                              json={"model": "m-error-503", "messages": USER, "stream": True})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "engine_unavailable"


def test_client_disconnect_mid_stream_cancels_the_engine_request(gateway: GatewayFactory,
                                                                 auth: dict,
                                                                 engine_log: EngineLog) -> None:
    with gateway() as url:
        with httpx.stream("POST", url + "/v1/chat/completions", timeout=30,
                          headers={**auth, "X-Request-ID": "leave-stream"},
                          json={"model": "m-slow-stream", "messages": USER, "stream": True}) as r:
            lines = r.iter_lines()
            next(line for line in lines if line.startswith("data: "))
        # the client has closed its connection here
        deadline = time.monotonic() + 5
        while "leave-stream" not in engine_log.cancelled and time.monotonic() < deadline:
            time.sleep(0.05)
    assert engine_log.cancelled == ["leave-stream"]
    assert engine_log.finished == []


def test_stream_that_never_starts_is_a_first_byte_timeout(gateway: GatewayFactory, auth: dict) -> None:
    with gateway(timeouts={"first_byte": 0.5, "total": 30}) as url:
        response = httpx.post(url + "/v1/chat/completions", headers=auth, timeout=30,
                              json={"model": "m-hang", "messages": USER, "stream": True})
    assert response.status_code == 504
    error = response.json()["error"]
    assert error["code"] == "engine_timeout" and "0.5s (first_byte)" in error["message"]
