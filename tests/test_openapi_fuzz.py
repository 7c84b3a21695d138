"""The API fuzzed from its own OpenAPI document: schemathesis generates requests for every
route (valid, boundary and invalid values) and each is sent with the master key, a virtual key
and no key to a live gateway on loopback. No answer may be a 5xx, every answer must match the
documented status codes, content types and schemas (so errors are OpenAI-shaped), and none may
take longer than a bound. The engine behind the gateway is the fault-injection engine's echo
mode: the fuzzer tests the gateway's handling of input, not the model.

TRAM_FUZZ_EXAMPLES sets the examples per route and key (default 20: ~1,000 requests, well
within CI's time).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import MASTER_KEY, fault_models
from tests.support.fault_engine import EngineLog
from tests.support.servers import serve_app
from tram.api.openapi import openapi_document, operations
from tram.api.table import ENDPOINTS, MODEL_ROUTES
from tram.app import create_app
from tram.config import Settings, parse_config

MODELS = ["qwen-text", "qwen-vl"]
EXAMPLES = int(os.environ.get("TRAM_FUZZ_EXAMPLES", "20"))
SLOWEST = 3.0  # seconds: no answer of this gateway over a healthy engine takes longer

OPERATIONS = operations(ENDPOINTS, MODEL_ROUTES)
schema = schemathesis.openapi.from_dict(openapi_document(MODELS, ENDPOINTS, MODEL_ROUTES))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory,
         fault_engine_server: tuple[str, EngineLog]) -> Iterator[tuple[str, dict]]:
    """A gateway over the echo engine, and the headers of each kind of caller."""
    data = tmp_path_factory.mktemp("fuzz") / "data"
    settings_ = Settings(master_key=MASTER_KEY, master_key_source="test", config_path=None,
                         data_dir=data)
    models = [m for m in fault_models(fault_engine_server[0]) if m["name"] in MODELS]
    app = create_app(settings_, parse_config({"models": models}, "fuzz"))
    master = {"Authorization": f"Bearer {MASTER_KEY}"}
    with serve_app(app) as url:
        made = httpx.post(url + "/admin/keys", headers=master,
                          json={"name": "fuzzed", "models": ["qwen-text"]}).json()
        # The key the fuzzed /admin/keys/{key_id} requests act on: a random id would only
        # ever reach the 404, never the code that reads and writes a key.
        target = httpx.post(url + "/admin/keys", headers=master, json={"name": "target"}).json()
        yield url, {"master": master, "virtual": {"Authorization": f"Bearer {made['key']}"},
                    "none": {}, "target": target["id"]}


def test_the_document_lists_every_route_the_app_serves(live: tuple[str, dict]) -> None:
    url, callers = live
    served = httpx.get(url + "/openapi.json", headers=callers["master"]).json()
    assert served["openapi"] == "3.1.0"
    documented = {(path, method) for path, ops in served["paths"].items() for method in ops}
    assert documented == {(op.path, op.method) for op in OPERATIONS}
    model = served["components"]["schemas"]["ChatCompletionRequest"]["properties"]["model"]
    assert model["examples"] == MODELS  # this deployment's aliases, to a caller with a key
    anonymous = httpx.get(url + "/openapi.json").json()
    assert "examples" not in anonymous["components"]["schemas"]["ChatCompletionRequest"][
        "properties"]["model"]  # and to nobody else
    assert anonymous["paths"] == served["paths"]
    # Every documented route answers (not 404/405) with the master key.
    for op in OPERATIONS:
        path = op.path.replace("{model}", "qwen-text").replace("{key_id}", "key_none")
        answer = httpx.request(op.method.upper(), url + path, headers=callers["master"],
                               json={} if op.body else None)
        assert answer.status_code not in (405,), (op.method, op.path)
        assert not (answer.status_code == 404 and "No route" in answer.text), (op.method, op.path)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_fuzzed_requests_get_documented_answers(case: schemathesis.Case,
                                                live: tuple[str, dict]) -> None:
    url, callers = live
    callers = dict(callers)
    target = callers.pop("target")
    if case.path_parameters and "key_id" in case.path_parameters:
        case.path_parameters["key_id"] = target
    for caller, headers in callers.items():
        response = case.call(base_url=url, headers=headers, timeout=10)
        assert response.status_code < 500, (caller, response.status_code, response.text[:500])
        assert response.elapsed < SLOWEST, (caller, response.elapsed)
        case.validate_response(response, checks=[
            status_code_conformance, content_type_conformance, response_schema_conformance])
        if response.status_code >= 400 and caller != "master" \
                and (case.operation.path.startswith("/admin") or case.operation.path == "/metrics"):
            # Without admin rights nothing of the admin API is revealed, whatever was sent
            # (405: a method no route has, which the coverage phase also tries).
            assert response.status_code in (401, 403, 405), (caller, response.status_code)


def test_the_document_is_written_for_operators(tmp_path: Path) -> None:
    document = openapi_document(MODELS, ENDPOINTS, MODEL_ROUTES)
    for path, ops in document["paths"].items():
        for method, spec in ops.items():
            assert spec["summary"] and spec["responses"]["default"], (method, path)
            if path.startswith(("/v1", "/admin", "/metrics")):
                assert spec["security"] == [{"bearer": []}], (method, path)
