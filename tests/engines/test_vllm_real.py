"""Real vLLM (its CPU build, `scripts/setup.sh --with-vllm`) behind `tram up`.

Two engines on the scripted tiny Qwen3 (tests/support/tiny_qwen3.py: Qwen's vocabulary and
template, answers set by its weights), started one after the other:
- `qwen-text`: thinking off by default, every route native (vLLM's own Responses and Messages);
- `qwen-bridged`: thinking on by default, Responses and Messages bridged to chat completions.

What each test proves is what no fake could: vLLM's real reasoning and tool parsers, its
Responses and Anthropic front ends, its /metrics names, and the key guard on its every path.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import anthropic
import httpx
import openai
import orjson
import pytest

from tests.conftest import MASTER_KEY, GatewayFactory
from tests.support.tiny_qwen3 import ANSWER, LOOP, REASONING, TOOL_ARGUMENTS, TOOL_NAME
from tests.support.tram_up import TramUp, children_of
from tests.test_spec_examples import _blocks, _curl, _localise
from tram.routing.engine_load import parse_metrics

pytestmark = pytest.mark.vllm

HELLO = [{"role": "user", "content": "Xin chào"}]
AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
TOOLS = [{"type": "function", "function": {
    "name": TOOL_NAME, "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}]


@pytest.fixture(scope="module")
def client(vllm_up: TramUp) -> openai.OpenAI:
    return openai.OpenAI(base_url=vllm_up.url + "/v1", api_key=MASTER_KEY, max_retries=0)


def test_the_two_engines_started_one_after_the_other(vllm_up: TramUp) -> None:
    log = vllm_up.text()
    assert log.index("qwen-text is ready") < log.index("starting qwen-bridged")


# -- the guide, verbatim ------------------------------------------------------------------


def test_guide_section_3_and_5_curl(vllm_up: TramUp) -> None:
    out, _ = _curl(1, vllm_up)
    body, status = out.rsplit("\n", 1)
    assert status == "200", body
    answer = orjson.loads(body)
    assert answer["model"] == "qwen-text"
    assert answer["choices"][0]["message"]["content"] == ANSWER  # thinking off by default
    out, _ = _curl(3, vllm_up)
    body, status = out.rsplit("\n", 1)
    events = [orjson.loads(line[6:]) for line in body.splitlines() if line.startswith("data: {")]
    assert status == "200" and body.rstrip().endswith("data: [DONE]")
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
    assert text == ANSWER and all(e["model"] == "qwen-text" for e in events)


def test_guide_section_6_python_client(vllm_up: TramUp, tmp_path: Path) -> None:
    script = tmp_path / "guide_example.py"
    script.write_text(_localise(_blocks("python")[0], vllm_up))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"Response: {ANSWER}\n\n--- Streaming ---\n{ANSWER}"


# -- thinking: default and per request, on every route --------------------------------------


def test_chat_thinking_default_and_per_request(client: openai.OpenAI) -> None:
    off = client.chat.completions.create(model="qwen-text", messages=HELLO).choices[0].message
    assert off.content == ANSWER and not (off.model_extra or {}).get("reasoning")
    on = client.chat.completions.create(
        model="qwen-text", messages=HELLO,
        extra_body={"chat_template_kwargs": {"enable_thinking": True}}).choices[0].message
    extra = on.model_extra or {}
    assert extra["reasoning"] == extra["reasoning_content"] == REASONING  # both names
    assert (on.content or "").strip() == ANSWER
    default_on = client.chat.completions.create(model="qwen-bridged", messages=HELLO)
    assert (default_on.choices[0].message.model_extra or {})["reasoning_content"] == REASONING


def test_chat_stream_carries_both_reasoning_fields(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model="qwen-bridged", messages=HELLO, stream=True)
    deltas = [chunk.choices[0].delta for chunk in stream if chunk.choices]
    extras = [d.model_extra or {} for d in deltas]
    assert "".join(e.get("reasoning_content") or "" for e in extras) == REASONING
    assert all(e.get("reasoning") == e.get("reasoning_content") for e in extras)
    assert "".join(d.content or "" for d in deltas).strip() == ANSWER


def test_completions_pass_the_prompt_as_written(client: openai.OpenAI) -> None:
    """No template on completions: the prompt itself says whether the model thinks, and the
    gateway adds nothing to it."""
    start = "<|im_start|>user\nXin chào<|im_end|>\n<|im_start|>assistant\n"
    thinking = client.completions.create(model="qwen-text", prompt=start, max_tokens=30)
    assert thinking.choices[0].text.startswith("<think>" + REASONING + "</think>")
    plain = client.completions.create(model="qwen-text", prompt=start + "<think>\n\n</think>\n\n",
                                      max_tokens=30)
    assert plain.choices[0].text == ANSWER


@pytest.mark.parametrize("model", ["qwen-text", "qwen-bridged"])
def test_responses_thinking_default_and_per_request(client: openai.OpenAI, model: str) -> None:
    default = client.responses.create(model=model, input="Xin chào")
    kinds = [item.type for item in default.output]
    assert ("reasoning" in kinds) == (model == "qwen-bridged"), kinds
    assert default.output_text.strip() == ANSWER
    flipped = client.responses.create(
        model=model, input="Xin chào",
        reasoning={"effort": "none" if model == "qwen-bridged" else "medium"})
    assert ("reasoning" in [i.type for i in flipped.output]) == (model == "qwen-text")
    assert flipped.output_text.strip() == ANSWER


@pytest.mark.parametrize("model", ["qwen-text", "qwen-bridged"])
def test_messages_thinking_default_and_per_request(vllm_up: TramUp, model: str) -> None:
    """Anthropic's client with its own x-api-key header; the gateway talks to vLLM with the
    engine's key as a Bearer token (vLLM's Messages route takes no x-api-key)."""
    claude = anthropic.Anthropic(base_url=vllm_up.url, api_key=MASTER_KEY, max_retries=0)
    default = claude.messages.create(model=model, max_tokens=64, messages=HELLO)
    kinds = [block.type for block in default.content]
    assert ("thinking" in kinds) == (model == "qwen-bridged"), kinds
    assert "".join(b.text for b in default.content if b.type == "text").strip() == ANSWER
    thinking: anthropic.types.ThinkingConfigParam = \
        {"type": "disabled"} if model == "qwen-bridged" else {"type": "enabled", "budget_tokens": 1024}
    flipped = claude.messages.create(model=model, max_tokens=2048, messages=HELLO,
                                     thinking=thinking)
    assert ("thinking" in [b.type for b in flipped.content]) == (model == "qwen-text")


# -- tools ------------------------------------------------------------------------------------


def test_tool_calls_parsed_with_tool_choice_auto(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(model="qwen-text", messages=HELLO, tools=TOOLS)  # type: ignore[arg-type]
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    call = choice.message.tool_calls[0]
    assert call.function.name == TOOL_NAME  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == TOOL_ARGUMENTS  # type: ignore[union-attr]
    # The tool's result goes back; the model answers (the conversation completes).
    follow = client.chat.completions.create(model="qwen-text", tools=TOOLS, messages=[  # type: ignore[arg-type]
        *HELLO, choice.message.model_dump(exclude_none=True),  # type: ignore[list-item]
        {"role": "tool", "tool_call_id": call.id, "content": "31 °C, sunny"}])
    assert follow.choices[0].message.content == ANSWER


def test_tool_calls_with_tool_choice_required(client: openai.OpenAI) -> None:
    """Grammar-constrained: vLLM forces the call envelope; `strict` holds the arguments to the
    schema (the enum leaves the model one value to write)."""
    strict = [{"type": "function", "function": {
        "name": TOOL_NAME, "strict": True, "parameters": {
            "type": "object", "properties": {"city": {"type": "string", "enum": ["Hanoi"]}},
            "required": ["city"], "additionalProperties": False}}}]
    answer = client.chat.completions.create(model="qwen-text", messages=HELLO, tools=strict,  # type: ignore[arg-type]
                                            tool_choice="required", temperature=0, max_tokens=80)
    calls = answer.choices[0].message.tool_calls or []
    assert calls and all(c.function.name == TOOL_NAME for c in calls)  # type: ignore[union-attr]
    assert json.loads(calls[0].function.arguments) == TOOL_ARGUMENTS  # type: ignore[union-attr]


# -- usage, stores, routing -------------------------------------------------------------------


def test_a_cut_stream_is_charged_what_the_engine_generated(vllm_up: TramUp) -> None:
    made = httpx.post(vllm_up.url + "/admin/keys", headers=AUTH, json={"name": "cut-stream"})
    key = {"Authorization": f"Bearer {made.json()['key']}"}
    relayed = 0
    with httpx.stream("POST", vllm_up.url + "/v1/completions", headers=key, timeout=60, json={
            "model": "qwen-text", "prompt": LOOP, "max_tokens": 3000, "stream": True}) as stream:
        for line in stream.iter_lines():
            if line.startswith("data: {") and orjson.loads(line[6:])["choices"][0]["text"]:
                relayed += 1
                if relayed == 20:
                    break
    deadline = time.monotonic() + 20
    rows: list[dict] = []
    while time.monotonic() < deadline and not rows:
        rows = [r for r in httpx.get(vllm_up.url + "/admin/usage?by=key", headers=AUTH
                                     ).json()["data"] if r.get("name") == "cut-stream"]
        time.sleep(0.2)
    assert rows, "no usage row for the cut stream"
    # The engine's running count (continuous usage stats) at the cut: at least what was
    # relayed, far from the 3,000 it would have generated for nobody; marked estimated, as
    # every row whose final usage never came (a few tokens may follow the last count).
    assert 20 <= rows[0]["completion_tokens"] < 500 and rows[0]["prompt_tokens"] == 1
    assert rows[0]["estimated_requests"] == 1
    # The cut reached the engine: it stopped generating.
    with vllm_up.engine_client("qwen-text", timeout=10, headers={
            "Authorization": f"Bearer {vllm_up.engine_key('qwen-text')}"}) as engine:
        load = parse_metrics(engine.get("/metrics").content)
    assert load is not None and load.running == 0


def test_responses_store_and_previous_response_id(client: openai.OpenAI) -> None:
    first = client.responses.create(model="qwen-text", input="Xin chào", store=True)
    assert client.responses.retrieve(first.id).output_text == first.output_text
    second = client.responses.create(model="qwen-text", input="Cảm ơn",
                                     previous_response_id=first.id)
    assert second.previous_response_id == first.id and second.output_text.strip() == ANSWER


def test_cache_aware_routing_reads_the_engines_metrics(vllm_up: TramUp) -> None:
    key = vllm_up.engine_key("qwen-text")
    with vllm_up.engine_client("qwen-text", timeout=10,
                               headers={"Authorization": f"Bearer {key}"}) as engine:
        text = engine.get("/metrics").content
    names = {line.split(b"{", 1)[0] for line in text.splitlines() if line.startswith(b"vllm:")}
    assert {b"vllm:num_requests_waiting", b"vllm:kv_cache_usage_perc",
            b"vllm:prefix_cache_hits_total"} <= names
    assert parse_metrics(text) is not None  # the names the scraper reads are the real ones


# -- the engine answers the gateway alone ---------------------------------------------------


@pytest.mark.parametrize("path", ["/invocations", "/tokenize", "/metrics", "/pooling",
                                  "/classify", "/score", "/rerank", "/v1/models",
                                  "/v1/chat/completions", "/v1/messages"])
def test_the_engine_refuses_every_path_without_its_key(vllm_up: TramUp, path: str) -> None:
    with vllm_up.engine_client("qwen-text", timeout=10) as engine:
        body = {"model": "Qwen3-tiny", "messages": HELLO, "prompt": "hi"}
        assert engine.post(path, json=body).status_code == 401
        assert engine.get(path).status_code == 401
        assert engine.get("/health").status_code == 200


def test_the_engine_listens_on_a_private_socket_and_loopback_only(vllm_up: TramUp) -> None:
    where = vllm_up.engine_urls()["qwen-text"]
    assert where.startswith("unix:")
    assert Path(where.removeprefix("unix:")).parent.stat().st_mode & 0o777 == 0o700
    engines = children_of(vllm_up.process.pid)
    family = set(engines)
    for pid in engines:
        family.update(children_of(pid))
    inodes = set()
    for pid in family:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = str(fd.readlink()) if fd.is_symlink() else ""
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # LISTEN, one of the engines'
                listening.append(fields[1])
    # vLLM's own processes talk over loopback ports (its engine core's ZMQ sockets); nothing
    # of the engine's listens on another address.
    assert all(address.split(":")[0] in ("0100007F", "00000000000000000000000001000000")
               for address in listening), listening


def test_models_describe_themselves(client: openai.OpenAI, vllm_up: TramUp,
                                    gateway: GatewayFactory) -> None:
    """/v1/models carries each model's context window and capabilities: from the engine's
    settings for an engine Trạm starts, from the engine's own /models for any other."""
    card = client.models.retrieve("qwen-text").model_extra or {}
    assert card["context_window"] == card["max_model_len"] == 32768  # the qwen3 preset's
    assert card["capabilities"] == {"tools": True, "vision": False, "reasoning": True}
    upstream = vllm_up.engine_upstream("qwen-text", "Qwen3-tiny")
    models = [{"name": "elsewhere", "upstreams": [upstream], "health": {"probe_interval": 0.2}}]
    with gateway(models=models) as url:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            learned = httpx.get(url + "/v1/models/elsewhere", headers=AUTH).json()
            if learned.get("context_window"):
                break
            time.sleep(0.2)
    assert learned["context_window"] == 32768  # vLLM's max_model_len, read from its /models


@pytest.mark.parametrize("model", ["qwen-bridged", "qwen-text"])
def test_a_stateless_client_keeps_its_reasoning_sealed(client: openai.OpenAI, vllm_up: TramUp,
                                                       model: str) -> None:
    """Codex's way: store false, include reasoning.encrypted_content, the items sent back."""
    first = client.responses.create(
        model=model, input="Xin chào", store=False, include=["reasoning.encrypted_content"],
        reasoning={"effort": "medium"})
    reasoning = [item for item in first.output if item.type == "reasoning"]
    assert reasoning and reasoning[0].encrypted_content
    assert REASONING not in reasoning[0].encrypted_content
    kept = [item.model_dump(exclude_none=True) for item in first.output]
    follow = client.responses.create(model=model, store=False, reasoning={"effort": "medium"},
                                     input=[{"role": "user", "content": "Xin chào"}, *kept,
                                            {"role": "user", "content": "Cảm ơn"}])
    assert follow.output_text.strip() == ANSWER
    tampered = [dict(item) for item in kept]
    for item in tampered:
        if item["type"] == "reasoning":
            item["encrypted_content"] = item["encrypted_content"][:-8] + "AAAAAAAA"
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model=model, store=False, input=tampered)
    assert refused.value.body["code"] == "invalid_encrypted_content"  # type: ignore[index]
    made = httpx.post(vllm_up.url + "/admin/keys", headers=AUTH, json={"name": f"other-{model}"})
    other = openai.OpenAI(base_url=vllm_up.url + "/v1", api_key=made.json()["key"], max_retries=0)
    with pytest.raises(openai.BadRequestError):
        other.responses.create(model=model, store=False, input=kept)
