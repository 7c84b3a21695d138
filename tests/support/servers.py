"""Run an ASGI app on a real loopback port in a background thread, for the tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serve_app(app: Any, port: int | None = None, *, tram_server: bool | None = None,
              **options: Any) -> Iterator[str]:
    """Yield `http://127.0.0.1:PORT` while uvicorn serves `app`; stop it afterwards. A Trạm
    app (or any app with `tram_server=True`, which then carries its `connection_guard`, or is
    given one as `guard=`) runs on Trạm's own HTTP protocol, made by the factory `tram serve`
    uses; the test engines on uvicorn's."""
    from tram.app import TramApp
    from tram.config import ServerConfig
    from tram.server import gateway_config

    port = port or free_port()
    common: dict[str, Any] = {"host": "127.0.0.1", "port": port, "log_config": None,
                              "access_log": False, "lifespan": "on",
                              "timeout_graceful_shutdown": 2}
    config: uvicorn.Config
    if tram_server or (tram_server is None and isinstance(app, TramApp)):
        config = gateway_config(app, ServerConfig(), **{**common, **options})
    else:
        config = uvicorn.Config(app, **{**common, **options})
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def wait_healthy(url: str, process: subprocess.Popen[Any] | None = None, timeout: float = 30,
                 log: Path | None = None) -> None:
    """Until `url`/health answers 200; fails early if `process` exits (showing `log`)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        alive = process is None or process.poll() is None
        assert time.monotonic() < deadline and alive, log.read_text() if log else "not healthy"
        time.sleep(0.05)


def clean_env(**settings: str) -> dict[str, str]:
    """This process's environment without any TRAM_/LITELLM_ setting, plus `settings`: a
    `tram` command started by a test sees only what the test gives it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRAM_", "LITELLM_"))}
    return env | settings


def start_tram_serve(cwd: Path, config: str, master_key: str = "sk-test-master-0123456789",
                     workers: int = 1, log_level: str = "info",
                     **env: str) -> tuple[subprocess.Popen[str], str]:
    """`tram serve` (one worker) with `config` as its tram.yaml in `cwd`, once healthy: the
    process (stdout and stderr piped together: a test sending thousands of requests logs at
    `warning`, or the unread pipe fills and stalls the gateway) and its URL. The caller stops
    it."""
    (cwd / "tram.yaml").write_text(config)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tram", "serve", "--config", "tram.yaml", "--host", "127.0.0.1",
         "--port", str(port), "--workers", str(workers), "--log-level", log_level], cwd=cwd,
        env=clean_env(TRAM_MASTER_KEY=master_key, **env),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, process)
    return process, url
