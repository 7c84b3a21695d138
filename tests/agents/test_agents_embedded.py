"""The coding agents through Trạm on the embedded default (`tram up` with no tram.yaml:
SmolLM2-135M on llama-server, 8,192 tokens per slot): each CLI set up by `tram clients
--write` with no config, one prompt. Before issue #25 each first turn was refused (Codex
4,339 tokens, Claude Code 4,253, Qwen Code 7,656 > 4,096); now it must fit, stream to its
protocol's end without an error, and be counted, one usage row per request.

SmolLM2 is a 135M stand-in: what it answers is not checked, and it may talk until its cap.
Codex CLI ends such a turn with "Incomplete response returned, reason: max_output_tokens" and
exit status 1, Claude Code (after retrying) with "response exceeded the N output token
maximum"; that outcome is accepted only when the gateway's own last event said exactly that
(`response.completed` with status incomplete, reason max_output_tokens; `message_delta` with
stop_reason max_tokens)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.agents.protocol import finished, protocol_problems, stream_usage
from tests.conftest import MASTER_KEY
from tests.support.agents import agent_env, require_agents, run_agent, trap_proxy, write_setup
from tests.support.recording_proxy import recording_proxy
from tests.support.tram_up import TramUp

pytestmark = pytest.mark.engine

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
ROUTES = {"codex": "responses", "claude": "messages", "qwen": "chat"}


@pytest.mark.parametrize("agent", ["codex", "claude", "qwen"])
def test_the_agents_first_turn_fits_the_embedded_default(agent: str, embedded: TramUp,
                                                         tmp_path: Path) -> None:
    require_agents()
    made = httpx.post(embedded.url + "/admin/keys", headers=AUTH,
                      json={"name": f"{agent}-embedded", "models": ["qwen-text"]}).json()
    with recording_proxy(embedded.url) as proxy, trap_proxy() as trap:
        setup = write_setup(tmp_path / "setup", proxy.url)  # no config: the embedded profile
        run = run_agent(agent, "Reply with one word: hello",
                        agent_env(tmp_path / "home", setup, made["key"], trap),
                        tmp_path / "work", timeout=1200)
        assert trap.attempts == [], f"{agent} tried to leave the machine: {trap.attempts}"
    sent = proxy.generating()
    assert sent, f"{run.output[-2000:]}\n{proxy.report()}"
    for exchange in sent:
        assert exchange.body["model"] == "qwen-text"
        assert protocol_problems(exchange) == [], f"{run.output[-2000:]}\n{proxy.report()}"
    ends = [finished(exchange) for exchange in sent]
    rambled = (agent == "codex" and ends[-1] == "incomplete (max_output_tokens)" and
               "Incomplete response returned, reason: max_output_tokens" in run.output) or \
        (agent == "claude" and ends[-1] == "max_tokens" and
         "response exceeded the" in run.output and "output token maximum" in run.output)
    assert run.returncode == 0 or rambled, f"{run.output[-3000:]}\n{proxy.report()}"
    rows = httpx.get(embedded.url + "/admin/usage", headers=AUTH,
                     params={"by": "route", "key": made["id"]}).json()["data"]
    row = next(r for r in rows if r["route"] == ROUTES[agent])
    assert row["requests"] == len(sent) and row["errors"] == 0, rows
    reported = [stream_usage(exchange) for exchange in sent]
    assert row["prompt_tokens"] == sum(r[0] for r in reported if r), (rows, reported)
