"""What stored conversations may cost (issue 23, item 7): a key's store cap holds when a turn
is stored, not a minute later; a turn larger than the cap is refused before the engine (its
input alone) or answered and not stored (`store: false`); and a continuation brings back at
most `responses.max_expanded_bytes` of earlier turns, refused with a 400 naming the limit."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import MASTER_KEY
from tests.support.route_engine import RouteLog, route_engine
from tests.support.servers import serve_app
from tram.app import create_app
from tram.config import Settings, parse_config

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}


@pytest.fixture(scope="module")
def engine() -> Iterator[tuple[str, RouteLog]]:
    log = RouteLog()
    with serve_app(route_engine(log)) as url:
        yield url + "/v1", log


@contextmanager
def gateway(settings: Settings, engine_url: str, **responses: Any) -> Iterator[str]:
    models = [{"name": "native", "upstreams": [{"url": engine_url, "served_name": "e"}]},
              {"name": "bridged", "routes": {"responses": "bridge"},
               "upstreams": [{"url": engine_url, "served_name": "e"}]}]
    config = parse_config({"models": models, "responses": responses}, "test")
    with serve_app(create_app(settings, config)) as url:
        yield url


def _create(url: str, **body: Any) -> httpx.Response:
    return httpx.post(url + "/v1/responses", headers=AUTH, json=body, timeout=30)


def _stored(url: str, response_id: str) -> bool:
    found = httpx.get(url + f"/v1/responses/{response_id}", headers=AUTH, timeout=30)
    assert found.status_code in (200, 404), found.text
    return found.status_code == 200


def test_the_cap_holds_as_turns_are_stored(settings: Settings,
                                           engine: tuple[str, RouteLog]) -> None:
    with gateway(settings, engine[0], max_bytes_per_key=4096) as url:
        ids = []
        for turn in range(5):  # ~1.5 KB each: the cap holds two of them
            made = _create(url, model="native", input=f"{turn} " + "x" * 1400)
            assert made.status_code == 200 and made.json()["store"] is True, made.text
            ids.append(made.json()["id"])
        kept = [_stored(url, response_id) for response_id in ids]
    assert kept == [False, False, False, True, True]  # the oldest went as each was stored


@pytest.mark.parametrize("model", ["native", "bridged"])
@pytest.mark.parametrize("stream", [False, True])
def test_a_turn_larger_than_the_cap_is_never_stored(settings: Settings,
                                                    engine: tuple[str, RouteLog],
                                                    model: str, stream: bool) -> None:
    log = engine[1]
    with gateway(settings, engine[0], max_bytes_per_key=1024) as url:
        before = len(log.received)
        refused = _create(url, model=model, input="y" * 1100, stream=stream)
        assert len(log.received) == before  # refused before the engine was called
        unstored = _create(url, model=model, input="y" * 1100, store=False, stream=stream)
        # Within the cap alone, over it with the answer: answered, and it says so.
        client = openai.OpenAI(base_url=url + "/v1", api_key=MASTER_KEY, max_retries=0)
        if stream:
            with client.responses.stream(model=model, input="z" * 700) as events:
                answered = events.get_final_response()
        else:
            answered = client.responses.create(model=model, input="z" * 700)
        fits = client.responses.create(model=model, input="small")
        stored = [_stored(url, answered.id), _stored(url, fits.id)]
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert (error["code"], error["param"], error["type"]) == \
        ("store_limit_exceeded", "input", "invalid_request_error")
    assert "responses.max_bytes_per_key: 1024 bytes" in error["message"]
    assert "store: false" in error["message"]
    assert unstored.status_code == 200
    assert answered.output_text and answered.store is False
    assert fits.store is True and stored == [False, True]


def test_a_continuation_expands_to_at_most_max_expanded_bytes(
        settings: Settings, engine: tuple[str, RouteLog]) -> None:
    log = engine[1]
    with gateway(settings, engine[0], max_expanded_bytes=2048) as url:
        first = _create(url, model="native", input="a" * 900).json()
        second = _create(url, model="native", input="b" * 900,
                         previous_response_id=first["id"]).json()
        sent = len(log.received)
        refused = _create(url, model="native", input="c", previous_response_id=second["id"])
        refused_stream = _create(url, model="bridged", input="c", stream=True,
                                 previous_response_id=second["id"])
        reached = len(log.received) - sent
        shorter = _create(url, model="native", input="c", previous_response_id=first["id"])
    assert second["store"] is True
    for answer in (refused, refused_stream):
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        assert (error["code"], error["param"]) == ("conversation_too_large",
                                                   "previous_response_id")
        assert "responses.max_expanded_bytes: 2048 bytes" in error["message"]
    assert reached == 0  # the engine never saw them
    assert shorter.status_code == 200  # one turn back is within the bound
