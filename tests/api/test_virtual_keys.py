"""Virtual keys end to end: admin API, the real `openai` client, revocation, expiry, model
scoping, and that no key is ever stored or logged in clear."""

from __future__ import annotations

import datetime as dt
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import MASTER_KEY, GatewayFactory
from tests.support.fault_engine import EngineLog
from tests.support.servers import clean_env, free_port, wait_healthy
from tram.config import Settings

USER = [{"role": "user", "content": "hi"}]


def create(url: str, auth: dict, **body: object) -> dict:
    response = httpx.post(url + "/admin/keys", headers=auth, json={"name": "app", **body})
    assert response.status_code == 201, response.text
    return response.json()


def test_key_lifecycle_through_the_admin_api_and_the_openai_client(
        gateway: GatewayFactory, auth: dict, settings: Settings) -> None:
    with gateway() as url:
        made = create(url, auth, owner="team-a", models=["qwen-text"])
        key = made["key"]
        assert key.startswith("sk-tram-") and made["status"] == "active"
        client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
        answer = client.chat.completions.create(model="qwen-text", messages=USER)
        assert answer.choices[0].message.content == "fake answer"
        # Only the models the key may use are listed; the others do not exist for it.
        assert [m.id for m in client.models.list()] == ["qwen-text"]
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="qwen-vl", messages=USER)
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve("qwen-vl")
        # A virtual key never reaches the admin API.
        assert httpx.get(url + "/admin/keys", headers={"Authorization": f"Bearer {key}"}
                         ).status_code == 403
        listed = httpx.get(url + "/admin/keys", headers=auth).json()["data"]
        assert [k["id"] for k in listed] == [made["id"]] and "key" not in listed[0]
        assert listed[0]["key_hint"].startswith("sk-tram-") and key not in str(listed)
        shown = httpx.get(url + f"/admin/keys/{made['id']}", headers=auth).json()
        assert shown["owner"] == "team-a" and shown["models"] == ["qwen-text"]
        widened = httpx.patch(url + f"/admin/keys/{made['id']}", headers=auth,
                              json={"models": None}).json()
        assert widened["models"] is None
        assert {m.id for m in client.models.list()} >= {"qwen-text", "qwen-vl"}
        revoked = httpx.delete(url + f"/admin/keys/{made['id']}", headers=auth).json()
        assert revoked["status"] == "revoked"
        with pytest.raises(openai.AuthenticationError) as caught:
            client.chat.completions.create(model="qwen-text", messages=USER)
        assert "revoked" in caught.value.message
    database = (settings.data_dir / "tram.db").read_bytes()
    wal = settings.data_dir / "tram.db-wal"
    assert key.encode() not in database + (wal.read_bytes() if wal.exists() else b"")


def test_expired_key_is_refused(gateway: GatewayFactory, auth: dict) -> None:
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).isoformat()
    with gateway() as url:
        key = create(url, auth, expires_at=past)["key"]
        refused = httpx.get(url + "/v1/models", headers={"Authorization": f"Bearer {key}"})
        naive = httpx.post(url + "/admin/keys", headers=auth,
                           json={"name": "x", "expires_at": "2030-01-01T00:00:00"})
    assert refused.status_code == 401 and "expired" in refused.json()["error"]["message"]
    assert naive.status_code == 400 and naive.json()["error"]["param"] == "expires_at"


def test_admin_errors_are_openai_shaped(gateway: GatewayFactory, auth: dict) -> None:
    with gateway() as url:
        missing = httpx.get(url + "/admin/keys/key_nope", headers=auth)
        bad = httpx.post(url + "/admin/keys", headers=auth, json={"name": ""})
        unknown = httpx.post(url + "/admin/keys", headers=auth, json={"name": "a", "colour": 5})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "name"
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "colour"


def test_keys_never_reach_the_log(gateway: GatewayFactory, auth: dict,
                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with gateway() as url:
        key = create(url, auth)["key"]
        httpx.post(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                   json={"model": "qwen-text", "messages": USER})
        time.sleep(0.2)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert key not in text and MASTER_KEY not in text
    assert '"key_id":"key_' in text  # requests are attributed to the key's id


def test_revocation_is_immediate_across_workers_and_the_cli(
        tmp_path: Path, fault_engine_server: tuple[str, EngineLog]) -> None:
    (tmp_path / "tram.yaml").write_text(
        f"models:\n  - name: qwen-text\n    upstreams: [{{url: '{fault_engine_server[0]}', "
        "served_name: echo}]\n")
    env = clean_env(TRAM_MASTER_KEY=MASTER_KEY, TRAM_DATA_DIR=str(tmp_path / "data"))

    def tram(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tram", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60, check=False)

    made = tram("keys", "create", "--name", "cli-app", "--model", "qwen-text")
    assert made.returncode == 0, made.stderr
    key = next(line.split('"')[3] for line in made.stdout.splitlines() if '"key":' in line)
    key_id = next(line.split('"')[3] for line in made.stdout.splitlines() if '"id":' in line)
    assert key_id in tram("keys", "list").stdout and key not in tram("keys", "list").stdout

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tram", "serve", "--config", "tram.yaml", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "2"], cwd=tmp_path, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {key}"}
    body = {"model": "qwen-text", "messages": USER}
    try:
        wait_healthy(url, server)
        # new connections each time: spread over both workers
        assert {httpx.post(url + "/v1/chat/completions", headers=headers, json=body).status_code
                for _ in range(8)} == {200}
        assert tram("keys", "revoke", key_id).returncode == 0
        assert {httpx.post(url + "/v1/chat/completions", headers=headers, json=body).status_code
                for _ in range(8)} == {401}
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    # Both workers flushed their usage on shutdown: the 8 served requests are rows; the 8
    # refused ones (no valid key) cost no disk write, so they are no rows at all.
    usage = tram("usage", "--by", "key").stdout
    # Columns: name, owner, key id, requests, …
    assert any(line.split()[:4] == ["cli-app", "-", key_id, "8"] for line in usage.splitlines())
    assert not any(line.startswith("-") for line in usage.splitlines())
