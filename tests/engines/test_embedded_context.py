"""The embedded profile's context (issue #25): each of llama-server's 8 slots holds 8,192
tokens, SmolLM2's trained context, so the coding agents' 4-8K-token first turns fit; a prompt
beyond it is the engine's own 400, passed on, and logged under the engine's error type, not
as an internal error of the gateway."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import MASTER_KEY
from tests.support.tram_up import TramUp, children_of
from tram.engines.up import EMBEDDED_CONTEXT, embedded_profile
from tram.errors import UpstreamClientError

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}


def test_the_profile_gives_each_slot_smollm2s_trained_context() -> None:
    engine = embedded_profile(Path("/m.gguf"))["models"][0]["engine"]
    assert EMBEDDED_CONTEXT == 8192 and engine["context"] == EMBEDDED_CONTEXT


def test_an_engine_refusal_is_logged_under_the_engines_own_error() -> None:
    error = UpstreamClientError("request (9000 tokens) exceeds the available context size "
                                "(8192 tokens), try increasing it", status=400,
                                type_="exceed_context_size_error")
    assert error.code == "exceed_context_size_error"  # what the log and usage row name
    assert error.body()["error"]["code"] is None  # what the client sees: the engine's own
    coded = UpstreamClientError("x", status=400, code="context_length_exceeded")
    assert coded.code == "context_length_exceeded"


@pytest.mark.engine
def test_llama_server_runs_8192_tokens_per_slot(embedded: TramUp) -> None:
    argv = []
    for pid in children_of(embedded.process.pid):
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if any(b"SmolLM2" in a for a in args):
            argv = [a.decode() for a in args]
    assert argv, "no llama-server serving SmolLM2"
    parallel = int(argv[argv.index("--parallel") + 1])
    assert int(argv[argv.index("--ctx-size") + 1]) == parallel * 8192


@pytest.mark.engine
def test_a_prompt_over_the_context_is_the_engines_400_logged_as_such(embedded: TramUp) -> None:
    words = " ".join(f"word{i}" for i in range(6000))  # ~18K tokens: refused before decoding
    answer = httpx.post(embedded.url + "/v1/chat/completions", headers={
        **AUTH, "X-Request-ID": "ctx-overflow-1"}, timeout=300, json={
        "model": "qwen-text", "max_tokens": 1, "messages": [{"role": "user", "content": words}]})
    assert answer.status_code == 400, answer.text
    assert "(8192 tokens)" in answer.json()["error"]["message"]
    deadline = time.monotonic() + 10
    line: dict[str, object] = {}
    while not line and time.monotonic() < deadline:
        for text in embedded.output:
            if "ctx-overflow-1" in text and text.startswith("{"):
                line = orjson.loads(text)
        time.sleep(0.1)
    assert line.get("status") == 400 and line.get("error_code") == "exceed_context_size_error"
