"""Stored responses outlive the process that made them: `previous_response_id` continues a
conversation whichever of several gateway workers takes the request, and after a restart, as
the openai client uses it."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import MASTER_KEY, GatewayFactory
from tests.support.keys import key_with
from tests.support.route_engine import RouteLog, route_engine
from tests.support.servers import serve_app, start_tram_serve


@pytest.fixture(scope="module")
def engine() -> Iterator[tuple[str, RouteLog]]:
    log = RouteLog()
    with serve_app(route_engine(log)) as url:
        yield url + "/v1", log


def _stop(process: object) -> None:
    import subprocess
    assert isinstance(process, subprocess.Popen)
    process.send_signal(signal.SIGTERM)
    process.wait(30)


def test_previous_response_id_across_two_workers_and_a_restart(
        tmp_path: Path, engine: tuple[str, RouteLog]) -> None:
    url, log = engine
    config = (f"models:\n  - name: qwen-text\n    upstreams:\n      - url: {url}\n"
              "        served_name: engine-model\n")
    process, gateway = start_tram_serve(tmp_path, config, MASTER_KEY, workers=2)
    try:
        ids = []
        previous = None
        for turn in range(6):  # a new connection each time: both workers take turns
            client = openai.OpenAI(base_url=gateway + "/v1", api_key=MASTER_KEY)
            answer = client.responses.create(model="qwen-text", input=f"turn {turn}",
                                             previous_response_id=previous)
            client.close()
            ids.append(answer.id)
            previous = answer.id
        assert answer.output_text == "native answer to 11 items"  # 6 turns + 5 answers
    finally:
        _stop(process)
    process, gateway = start_tram_serve(tmp_path, config, MASTER_KEY)
    try:
        client = openai.OpenAI(base_url=gateway + "/v1", api_key=MASTER_KEY)
        after = client.responses.create(model="qwen-text", input="after the restart",
                                        previous_response_id=ids[-1])
        assert after.output_text == "native answer to 13 items"
        assert client.responses.retrieve(ids[0]).output_text == "native answer to 1 items"
        sent = log.bodies("/v1/responses")[-1]["input"]
        assert [item["content"] for item in sent if item.get("role") == "user"] == \
            [f"turn {n}" for n in range(6)] + ["after the restart"]
    finally:
        _stop(process)


def test_input_items_and_cancel_of_a_stored_response(gateway: GatewayFactory, auth: dict,
                                                    engine: tuple[str, RouteLog]) -> None:
    """What agents ask of a stored response: its input items page by page, as OpenAI lists
    them, and a cancel, refused as OpenAI refuses it for a response that is not background."""
    url, _ = engine
    models = [{"name": "qwen-text", "upstreams": [{"url": url, "served_name": "m"}]}]
    with gateway(models=models) as gateway_url:
        client = openai.OpenAI(base_url=gateway_url + "/v1", api_key=MASTER_KEY)
        made = client.responses.create(model="qwen-text", input=[
            {"role": "user", "content": "first"}, {"role": "user", "content": "second"}])
        items = client.responses.input_items.list(made.id)
        assert [item.content for item in items.data] == ["second", "first"]  # newest first
        page = httpx.get(f"{gateway_url}/v1/responses/{made.id}/input_items?limit=1&order=asc",
                         headers=auth).json()
        assert page["has_more"] is True and page["data"][0]["content"] == "first"
        rest = httpx.get(f"{gateway_url}/v1/responses/{made.id}/input_items?order=asc"
                         f"&after={page['last_id']}", headers=auth).json()
        assert [item["content"] for item in rest["data"]] == ["second"]
        with pytest.raises(openai.BadRequestError) as refused:
            client.responses.cancel(made.id)
        assert refused.value.body["code"] == "response_not_cancellable"  # type: ignore[index]
        other = key_with(gateway_url, auth, name="other")
        assert httpx.get(f"{gateway_url}/v1/responses/{made.id}/input_items",
                         headers=other).status_code == 404
