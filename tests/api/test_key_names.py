"""Keys by name, as people know them: wherever an id is taken (admin API, `tram keys`,
`tram usage`), with names and owners shown beside ids; and the terminal a new user sees
(readable log lines, no Alembic chatter)."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import MASTER_KEY, GatewayFactory
from tests.support.fault_engine import EngineLog
from tests.support.keys import chat
from tests.support.servers import clean_env, free_port, wait_healthy
from tram.logs import TextFormatter, resolve_format

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}


def _make(url: str, name: str, owner: str) -> dict:
    made = httpx.post(url + "/admin/keys", headers=AUTH, json={"name": name, "owner": owner})
    assert made.status_code == 201
    return made.json()


def test_the_admin_api_takes_a_name_wherever_it_takes_an_id(gateway: GatewayFactory) -> None:
    with gateway() as url:
        billing = _make(url, "billing-app", "team-a")
        first, second = _make(url, "shared", "team-b"), _make(url, "shared", "team-c")
        assert chat(url, {"Authorization": f"Bearer {billing['key']}"}).status_code == 200
        shown = httpx.get(url + "/admin/keys/billing-app", headers=AUTH).json()
        assert shown["id"] == billing["id"]
        changed = httpx.patch(url + "/admin/keys/billing-app", headers=AUTH, json={"rpm": 5})
        assert changed.json()["rpm"] == 5
        ambiguous = httpx.get(url + "/admin/keys/shared", headers=AUTH)
        assert ambiguous.status_code == 400
        error = ambiguous.json()["error"]
        assert error["code"] == "ambiguous_key_name"
        assert first["id"] in error["message"] and second["id"] in error["message"]
        assert "team-b" in error["message"] and "team-c" in error["message"]
        rows = httpx.get(url + "/admin/usage", params={"by": "key"}, headers=AUTH).json()["data"]
        assert {"key": billing["id"], "name": "billing-app", "owner": "team-a"}.items() \
            <= rows[0].items()
        by_day = httpx.get(url + "/admin/usage", params={"by": "day", "key": "billing-app"},
                           headers=AUTH).json()["data"]
        assert [row["requests"] for row in by_day] == [1]
        revoked = httpx.delete(url + "/admin/keys/billing-app", headers=AUTH).json()
        assert revoked["status"] == "revoked"
        missing = httpx.get(url + "/admin/keys/nobody", headers=AUTH)
        assert missing.status_code == 404 and "nobody" in missing.json()["error"]["message"]


def test_the_cli_takes_names_and_shows_them(tmp_path: Path,
                                           fault_engine_server: tuple[str, EngineLog]) -> None:
    (tmp_path / "tram.yaml").write_text(
        f"models:\n  - name: qwen-text\n    upstreams: [{{url: '{fault_engine_server[0]}', "
        "served_name: echo}]\n")
    env = clean_env(TRAM_MASTER_KEY=MASTER_KEY, TRAM_DATA_DIR=str(tmp_path / "data"))

    def tram(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tram", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60, check=False)

    made = tram("keys", "create", "--name", "billing-app", "--owner", "team-a")
    key = next(line.split('"')[3] for line in made.stdout.splitlines() if '"key":' in line)
    tram("keys", "create", "--name", "twin")
    tram("keys", "create", "--name", "twin")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tram", "serve", "--config", "tram.yaml", "--host", "127.0.0.1",
         "--port", str(port), "--log-format", "text"], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, server)
        assert chat(url, {"Authorization": f"Bearer {key}"}).status_code == 200
    finally:
        server.terminate()
        log = server.communicate(timeout=30)[0]
    # A person's terminal: readable lines, no Alembic plugin chatter, one line on the schema.
    assert "setup plugin" not in log and "Running upgrade" not in log
    assert '{"ts"' not in log
    access = next(line for line in log.splitlines() if "/v1/chat/completions" in line)
    assert "POST /v1/chat/completions 200" in access and "model=qwen-text" in access

    usage = tram("usage", "--by", "key")
    line = next(line for line in usage.stdout.splitlines() if "billing-app" in line)
    assert "team-a" in line and "key_" in line
    by_name = tram("usage", "--by", "day", "--key", "billing-app")
    assert by_name.returncode == 0 and by_name.stdout.splitlines()[1].split()[1] == "1"
    twin = tram("keys", "revoke", "twin")
    assert twin.returncode == 2 and twin.stderr.count("key_") == 2 and "2 keys" in twin.stderr
    revoked = tram("keys", "revoke", "billing-app")
    assert revoked.returncode == 0 and '"status": "revoked"' in revoked.stdout


def test_log_lines_for_people_and_for_machines() -> None:
    access = logging.LogRecord("tram.access", logging.INFO, "", 0, (
        '{"request_id":"r1","method":"POST","path":"/v1/responses","status":200,'
        '"model":"qwen-text","route":"responses","key_id":"key_ab","prompt_tokens":12,'
        '"completion_tokens":40,"first_byte_ms":81.0,"duration_ms":812.44}'), None, None)
    line = TextFormatter().format(access)
    assert "POST /v1/responses 200 812.4 ms model=qwen-text route=responses key=key_ab" in line
    assert "tokens=12+40" in line and "ttfb=81 ms" in line and line.endswith("id=r1")
    assert resolve_format("json") == "json" and resolve_format("text") == "text"
    assert resolve_format(None) == "json"  # stderr is not a terminal under pytest


def test_what_the_pages_read_me_and_the_models_replicas(gateway: GatewayFactory) -> None:
    with gateway() as url:
        made = httpx.post(url + "/admin/keys", headers=AUTH, json={
            "name": "reader", "owner": "team-r", "models": ["qwen-text"], "rpm": 7}).json()
        mine = {"Authorization": f"Bearer {made['key']}"}
        assert chat(url, mine).status_code == 200
        me = httpx.get(url + "/v1/me", headers=mine).json()
        assert (me["name"], me["owner"], me["is_admin"], me["models"]) == \
            ("reader", "team-r", False, ["qwen-text"])
        assert me["limits"]["rpm"] == 7 and made["key"] not in str(me)
        assert [row["requests"] for row in me["usage_by_day"]] == [1]
        master = httpx.get(url + "/v1/me", headers=AUTH).json()
        assert master["is_master"] and master["is_admin"] and "m-echo" in master["models"]
        assert httpx.get(url + "/admin/models", headers=mine).status_code == 403
        models = {m["id"]: m for m in httpx.get(url + "/admin/models", headers=AUTH).json()["data"]}
        replica = models["qwen-text"]["replicas"][0]
        assert replica["healthy"] and replica["circuit"] == "healthy"
        assert replica["in_flight"] == 0 and replica["served_name"] == "echo"
