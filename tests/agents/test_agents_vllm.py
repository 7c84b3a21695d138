"""The coding agents through Trạm on real vLLM (CPU build, the scripted tiny Qwen3 with the
qwen3 preset, tests/conftest.py `vllm_up`): each CLI set up by `tram clients --write`, asked
for the weather; the scripted model calls `get_weather` whenever tools are offered, the agent
handles the call its own way (none of them has a tool of that name: each answers with an
error result), and the model answers after the tool result. So every case is a tool round trip
through the gateway in the agent's own protocol: Codex on Responses, Claude Code on Anthropic
Messages, Qwen Code on chat completions; native on `qwen-text`, bridged to chat on
`qwen-bridged` (thinking on).

A recording proxy between the agent and the gateway keeps every request and answer; a trap
proxy (HTTPS_PROXY) records any attempt to reach anything else.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.agents.protocol import protocol_problems, stream_usage, tool_calls, tool_results
from tests.conftest import MASTER_KEY
from tests.support import weather_mcp
from tests.support.agents import agent_env, require_agents, run_agent, trap_proxy, write_setup
from tests.support.recording_proxy import RecordingProxy, recording_proxy
from tests.support.tiny_qwen3 import ANSWER, TOOL_NAME
from tests.support.tram_up import TramUp
from tests.support.weather_mcp import WEATHER_ANSWER

pytestmark = pytest.mark.vllm

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
PROMPT = "What is the weather in Hanoi?"
ROUTES = {"codex": "responses", "claude": "messages", "qwen": "chat"}


def _key(url: str, name: str, model: str) -> dict[str, str]:
    made = httpx.post(url + "/admin/keys", headers=AUTH, json={"name": name, "models": [model]})
    assert made.status_code == 201, made.text
    return made.json()  # type: ignore[no-any-return]


def _usage(url: str, key_id: str) -> dict[str, dict[str, int]]:
    answer = httpx.get(url + "/admin/usage", headers=AUTH, params={"by": "route", "key": key_id})
    assert answer.status_code == 200, answer.text
    return {row["route"]: row for row in answer.json()["data"]}


def _check_exchanges(proxy: RecordingProxy, agent: str, model: str, key: str) -> None:
    """Every request the agent sent: the key, the model, answered in full without a problem."""
    sent = proxy.generating()
    assert sent, proxy.report()
    for exchange in sent:
        assert exchange.path.split("?")[0].endswith(
            {"responses": "/v1/responses", "messages": "/v1/messages",
             "chat": "/v1/chat/completions"}[ROUTES[agent]]), exchange.path
        assert exchange.body["model"] == model
        given = exchange.headers.get("authorization", "").removeprefix("Bearer ") or \
            exchange.headers.get("x-api-key")
        assert given == key, "the agent sent another key"
        assert protocol_problems(exchange) == [], proxy.report()


def _check_round_trip(proxy: RecordingProxy) -> None:
    """The model's get_weather call reached the agent, whose result came back next request."""
    sent = proxy.generating()
    calls = [(i, call) for i, e in enumerate(sent) for call in tool_calls(e)]
    assert calls and calls[0][1][1] == TOOL_NAME, proxy.report()
    index, (call_id, _) = calls[0]
    later = [tool_results(e.body) for e in sent[index + 1:]]
    assert any(call_id in results for results in later), "no tool result came back"


def _check_usage(url: str, key_id: str, proxy: RecordingProxy, agent: str) -> None:
    """One usage row per request, with the tokens each answer reported."""
    rows = _usage(url, key_id)
    sent = proxy.generating()
    row = rows[ROUTES[agent]]
    assert row["requests"] == len(sent), (rows, proxy.report())
    assert row["errors"] == 0
    reported = [stream_usage(e) for e in sent]
    assert all(r is not None for r in reported), "an answer reported no usage"
    assert row["prompt_tokens"] == sum(r[0] for r in reported if r)
    assert row["completion_tokens"] == sum(r[1] for r in reported if r)


def _run(vllm_up: TramUp, tmp_path: Path, agent: str, model: str,
         adjust: Callable[[Path], None] | None = None) -> tuple[RecordingProxy, dict[str, str]]:
    """`tram clients --write` for this gateway (through the recording proxy), `adjust` on the
    folder it wrote, then the agent's run with a key of its own; it must exit 0 with the
    scripted answer and without trying to leave the machine."""
    require_agents()
    made = _key(vllm_up.url, f"{agent}-{model}-{tmp_path.name}", model)
    with recording_proxy(vllm_up.url) as proxy, trap_proxy() as trap:
        setup = write_setup(tmp_path / "setup", proxy.url, "--model", model,
                            "--config", str(vllm_up.cwd / "tram.yaml"))
        if adjust is not None:
            adjust(setup)
        run = run_agent(agent, PROMPT, agent_env(tmp_path / "home", setup, made["key"], trap),
                        tmp_path / "work", timeout=300)
        assert trap.attempts == [], f"{agent} tried to leave the machine: {trap.attempts}"
    assert run.returncode == 0, f"{run.output[-3000:]}\n{proxy.report()}"
    assert ANSWER in run.output, run.output[-3000:]
    return proxy, made


@pytest.mark.parametrize(("agent", "model"), [
    ("codex", "qwen-text"), ("claude", "qwen-text"), ("qwen", "qwen-text"),
    ("codex", "qwen-bridged"), ("claude", "qwen-bridged"), ("qwen", "qwen-bridged")])
def test_the_agent_completes_a_tool_round_trip(agent: str, model: str, vllm_up: TramUp,
                                               tmp_path: Path) -> None:
    proxy, made = _run(vllm_up, tmp_path, agent, model)
    _check_exchanges(proxy, agent, model, made["key"])
    _check_round_trip(proxy)
    _check_usage(vllm_up.url, made["id"], proxy, agent)


def _codex_defaults(setup: Path) -> None:
    """The generated config.toml less what keeps Codex to function tools: what a team that
    only names the provider gets (the hosted web_search tool, the multi_agent_v1 namespace)."""
    config = setup / "codex" / "config.toml"
    text = config.read_text().replace('web_search = "disabled"\n', "")
    config.write_text(text.replace("[agents]\nenabled = false\n", ""))


def test_codex_with_its_default_tools_on_the_bridge(vllm_up: TramUp, tmp_path: Path) -> None:
    proxy, made = _run(vllm_up, tmp_path, "codex", "qwen-bridged", _codex_defaults)
    kinds = {tool["type"] for tool in proxy.generating()[0].body["tools"]}
    assert {"namespace", "web_search"} <= kinds  # what this case is about
    _check_exchanges(proxy, "codex", "qwen-bridged", made["key"])
    _check_round_trip(proxy)


def test_codex_with_its_default_tools_on_native_vllm(vllm_up: TramUp, tmp_path: Path) -> None:
    """vLLM's own Responses API takes the namespace and web_search tools as they are."""
    proxy, made = _run(vllm_up, tmp_path, "codex", "qwen-text", _codex_defaults)
    kinds = {tool["type"] for tool in proxy.generating()[0].body["tools"]}
    assert {"namespace", "web_search"} <= kinds
    _check_exchanges(proxy, "codex", "qwen-text", made["key"])
    _check_round_trip(proxy)


@pytest.mark.parametrize("model", ["qwen-text", "qwen-bridged"])
def test_codex_runs_an_mcp_tool_through_tram(model: str, vllm_up: TramUp,
                                            tmp_path: Path) -> None:
    calls = tmp_path / "mcp-calls.jsonl"

    def with_mcp(setup: Path) -> None:
        with (setup / "codex" / "config.toml").open("a") as config:
            config.write("\n[mcp_servers.weather]\n"
                         f"command = {json.dumps(sys.executable)}\n"
                         f"args = [{json.dumps(weather_mcp.__file__)}, "
                         f"{json.dumps(str(calls))}]\n"
                         'default_tools_approval_mode = "approve"\n')

    proxy, _ = _run(vllm_up, tmp_path, "codex", model, with_mcp)
    assert calls.is_file() and json.loads(calls.read_text().splitlines()[0]) == {"city": "Hanoi"}
    results = [r for e in proxy.generating() for r in tool_results(e.body).values()]
    assert any(WEATHER_ANSWER in r for r in results), proxy.report()
