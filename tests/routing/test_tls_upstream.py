"""An engine behind https (a private CA): the gateway verifies it and relays as over http."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import httpx
import uvicorn
import yaml

from tests.conftest import MASTER_KEY
from tests.support.fault_engine import EngineLog, fault_engine
from tests.support.servers import free_port, serve_app
from tram.app import create_app
from tram.config import Settings, parse_config


def self_signed(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def test_https_engine_with_a_private_ca(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(fault_engine(EngineLog()), host="127.0.0.1", port=port,
                                           ssl_certfile=str(cert), ssl_keyfile=str(key),
                                           log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    engine = f"https://localhost:{port}/v1"
    data = {"models": [
        {"name": "trusted", "upstreams": [{"url": engine, "served_name": "stream",
                                           "ca_file": str(cert)}]},
        {"name": "untrusted", "upstreams": [{"url": engine, "served_name": "echo"}]}]}
    settings = Settings(master_key=MASTER_KEY, master_key_source="test", config_path=None)
    auth = {"Authorization": f"Bearer {MASTER_KEY}"}
    try:
        with serve_app(create_app(settings, parse_config(yaml.safe_load(yaml.safe_dump(data)),
                                                         "t"))) as url:
            ok = httpx.post(url + "/v1/chat/completions", headers=auth, timeout=30, json={
                "model": "trusted", "messages": [{"role": "user", "content": "hi"}],
                "stream": True})
            refused = httpx.post(url + "/v1/chat/completions", headers=auth, timeout=30, json={
                "model": "untrusted", "messages": [{"role": "user", "content": "hi"}]})
    finally:
        server.should_exit = True
        thread.join(10)
    assert ok.status_code == 200 and ok.text.rstrip().endswith("data: [DONE]")
    assert '"model":"trusted"' in ok.text
    assert refused.status_code == 502  # certificate not trusted: never sent in clear
    assert refused.json()["error"]["code"] == "engine_unreachable"
