"""Issue 23, items 4, 5, 6, 8 and 9: no request that can pin a worker, overshoot a budget,
go uncharged, crash the gateway by its nesting, or name a second model.

Engines: the fault-injection engine (slow answers, to keep requests in flight) and the route
engine (transcriptions and tokenize in vLLM's shapes)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import GatewayFactory, fault_models
from tests.support.fault_engine import EngineLog
from tests.support.keys import key_with
from tests.support.route_engine import RouteLog, route_engine
from tests.support.servers import serve_app

BOUNDARY = "tram-test-boundary"
# ~100 prompt tokens by the gateway's estimate (400 characters + the message's markers).
LONG_PROMPT = [{"role": "user", "content": "x" * 400}]


@pytest.fixture
def routes(gateway: GatewayFactory) -> Iterator[tuple[str, RouteLog]]:
    log = RouteLog()
    with serve_app(route_engine(log)) as engine:
        models = [{"name": "m", "upstreams": [{"url": engine + "/v1", "served_name": "fake"}]},
                  {"name": "other", "upstreams": [{"url": engine + "/v1",
                                                   "served_name": "fake"}]}]
        with gateway(models=models) as url:
            yield url, log


def _form(*parts: tuple[str, bytes]) -> bytes:
    """A multipart body from (Content-Disposition parameters, content) pairs."""
    body = b""
    for disposition, content in parts:
        body += (f"--{BOUNDARY}\r\ncontent-disposition: form-data; {disposition}\r\n\r\n"
                 ).encode() + content + b"\r\n"
    return body + f"--{BOUNDARY}--\r\n".encode()


def _upload(url: str, headers: dict[str, str], body: bytes) -> httpx.Response:
    return httpx.post(url + "/v1/audio/transcriptions", content=body, timeout=30, headers={
        **headers, "content-type": f"multipart/form-data; boundary={BOUNDARY}"})


def _usage(url: str, auth: dict[str, str], name: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = [r for r in httpx.get(url + "/admin/usage?by=key", headers=auth).json()["data"]
                if r.get("name") == name]
        if rows:
            return rows[0]
        time.sleep(0.1)
    raise AssertionError(f"no usage row for {name}")


# -- item 9: one model per upload -----------------------------------------------------------


@pytest.mark.parametrize("second", ['name=model', 'x-name="y"; name="model"',
                                    'name="model"'])
def test_an_upload_cannot_name_a_second_model(routes: tuple[str, RouteLog], auth: dict,
                                              second: str) -> None:
    url, log = routes
    scoped = key_with(url, auth, models=["m"])
    body = _form(('name="file"; filename="a.wav"', b"RIFF"), ('name="model"', b"m"),
                 (second, b"other"))
    answer = _upload(url, scoped, body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "duplicate_field"
    assert log.bodies("/v1/audio/transcriptions") == []


def test_an_unquoted_field_name_is_read_as_the_engine_reads_it(routes: tuple[str, RouteLog],
                                                              auth: dict) -> None:
    url, log = routes
    scoped = key_with(url, auth, models=["m"])
    body = _form(('name="file"; filename="a.wav"', b"RIFF"), ("name=model", b"other"))
    answer = _upload(url, scoped, body)
    assert answer.status_code == 404  # `other` is outside the key's scope
    assert log.bodies("/v1/audio/transcriptions") == []


def test_a_form_of_many_tiny_parts_is_refused(routes: tuple[str, RouteLog], auth: dict) -> None:
    url, log = routes
    body = _form(*[(f'name="f{i}"', b"x") for i in range(2000)], ('name="model"', b"m"))
    answer = _upload(url, auth, body)
    assert answer.status_code == 400 and "parts" in answer.json()["error"]["message"]
    assert log.bodies("/v1/audio/transcriptions") == []


# -- item 4: admitted before the body is read ---------------------------------------------


def test_a_key_over_its_rate_is_refused_before_its_upload_is_read(
        routes: tuple[str, RouteLog], auth: dict) -> None:
    url, _ = routes
    limited = key_with(url, auth, rpm=1)
    first = _upload(url, limited, _form(('name="file"; filename="a.wav"', b"RIFF"),
                                        ('name="model"', b"m")))
    assert first.status_code == 200, first.text
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        head = (f"POST /v1/audio/transcriptions HTTP/1.1\r\nhost: x\r\n"
                f"authorization: {limited['Authorization']}\r\n"
                f"content-type: multipart/form-data; boundary={BOUNDARY}\r\n"
                f"content-length: {20 * 1024 * 1024}\r\n\r\n")
        conn.sendall(head.encode() + b"--" + BOUNDARY.encode())  # and nothing more
        started = time.monotonic()
        answer = conn.recv(4096)
    assert answer.startswith(b"HTTP/1.1 429"), answer[:200]
    assert time.monotonic() - started < 3  # not after the body pause timeout


# -- item 6: every route charges something real ----------------------------------------------


def test_transcriptions_are_charged_their_duration(routes: tuple[str, RouteLog],
                                                   auth: dict) -> None:
    url, _ = routes
    key = key_with(url, auth, name="audio", budget_tokens=10)
    body = _form(('name="file"; filename="a.wav"', b"RIFF" * 100), ('name="model"', b"m"))
    assert _upload(url, key, body).status_code == 200
    row = _usage(url, auth, "audio")
    assert row["prompt_tokens"] == 50  # 1 s of audio, as the engine reported it
    assert row["completion_tokens"] > 0  # the text
    refused = _upload(url, key, body)  # 10 tokens spent well past
    assert refused.status_code == 429


def test_tokenize_is_charged_the_tokens_it_counted(routes: tuple[str, RouteLog],
                                                   auth: dict) -> None:
    url, _ = routes
    key = key_with(url, auth, name="tokens", budget_tokens=2)
    answer = httpx.post(url + "/tokenize", headers=key, json={"model": "m", "prompt": "a b c"})
    assert answer.status_code == 200
    assert _usage(url, auth, "tokens")["prompt_tokens"] == 3
    again = httpx.post(url + "/tokenize", headers=key, json={"model": "m", "prompt": "a b c"})
    assert again.status_code == 429


# -- item 5: bursts hold their prompt too ---------------------------------------------------


@pytest.mark.parametrize("limit", [{"budget_tokens": 100}, {"tpm": 100}])
def test_a_burst_is_held_to_the_budget_and_the_minute(
        gateway: GatewayFactory, auth: dict, engine_log: EngineLog,
        fault_engine_server: tuple[str, EngineLog], limit: dict[str, int]) -> None:
    """Twenty requests at once, each ~100 prompt tokens and max_tokens 1, on a 100-token
    budget (or tpm): the first is admitted and held in flight by the slow engine (10 s), and
    what it holds (its prompt too) refuses the rest."""
    models = [m for m in fault_models(fault_engine_server[0]) if m["name"] == "m-slow-json"]
    with gateway(models=models, timeouts={"first_byte": 60, "idle": 60, "total": 60}) as url:
        key = key_with(url, auth, **limit)

        def ask() -> int:
            return httpx.post(url + "/v1/chat/completions", headers=key, timeout=60, json={
                "model": "m-slow-json", "messages": LONG_PROMPT, "max_tokens": 1}).status_code

        with ThreadPoolExecutor(20) as pool:
            statuses = list(pool.map(lambda _: ask(), range(20)))
    assert statuses.count(429) >= 18 and statuses.count(200) >= 1, statuses
    assert len(engine_log.received) == statuses.count(200)  # the engine saw only those


# -- item 8: nesting the gateway cannot write back -----------------------------------------


@pytest.mark.parametrize("depth", [150, 300, 1000])
def test_deeply_nested_json_is_a_400_everywhere(routes: tuple[str, RouteLog], auth: dict,
                                               depth: int) -> None:
    url, log = routes
    nested = b"[" * depth + b'"x"' + b"]" * depth  # written by hand: json.dumps recurses
    for path, body in (("/v1/chat/completions", {"model": "m", "messages": LONG_PROMPT}),
                       ("/v1/responses", {"model": "m", "input": "hi"}),
                       ("/v1/completions", {"model": "m", "prompt": "hi"})):
        raw = orjson.dumps(body)[:-1] + b', "metadata_extra": ' + nested + b"}"
        answer = httpx.post(url + path, headers={**auth, "content-type": "application/json"},
                            content=raw, timeout=30)
        assert answer.status_code == 400, (path, answer.text)
        assert answer.json()["error"]["code"] == "invalid_json"
    assert log.received == []


def test_uploads_in_memory_are_bounded_per_process(gateway: GatewayFactory, auth: dict) -> None:
    """Four uploads of the largest allowed size may be in memory at once; a fifth waits for
    room, then gets a 503 with Retry-After, before any of its body is read."""
    log = RouteLog()
    size = 64 * 1024
    with serve_app(route_engine(log)) as engine, gateway(
            models=[{"name": "m", "upstreams": [{"url": engine + "/v1", "served_name": "f"}]}],
            server={"max_upload_bytes": size, "body_timeout": 30}) as url:
        host, port = url.removeprefix("http://").split(":")
        head = (f"POST /v1/audio/transcriptions HTTP/1.1\r\nhost: x\r\n"
                f"authorization: {auth['Authorization']}\r\n"
                f"content-type: multipart/form-data; boundary={BOUNDARY}\r\n"
                f"content-length: {size}\r\n\r\n").encode()
        held = []
        try:
            for _ in range(4):  # each holds its declared size, its body still coming
                conn = socket.create_connection((host, int(port)), timeout=10)
                conn.sendall(head + b"--" + BOUNDARY.encode())
                held.append(conn)
            time.sleep(0.3)
            with socket.create_connection((host, int(port)), timeout=10) as fifth:
                fifth.sendall(head)
                answer = fifth.recv(4096)
        finally:
            for conn in held:
                conn.close()
    assert answer.startswith(b"HTTP/1.1 503"), answer[:300]
    assert b"retry-after" in answer.lower() and b"server_busy" in answer
