"""Stored responses outlive the process that made them: `previous_response_id` continues a
conversation whichever of several gateway workers takes the request, and after a restart, as
the openai client uses it."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.conftest import MASTER_KEY
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
