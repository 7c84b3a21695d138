"""deploy/Caddyfile run by the real Caddy (Debian's `caddy`, installed by scripts/setup.sh) in
front of a real `tram serve`, over HTTPS with Caddy's own internal CA (`local_certs`, the same
as `tls internal`): a stream comes through as it is made, uncompressed, and a client that hangs
up cancels the engine's work through Caddy and Trạm, which charges what was made. With
`flush_interval -1` (the shipped file before) Caddy ignored the client's disconnect, so the
GPU went on generating for nobody and Trạm never saw the cut."""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import MASTER_KEY
from tests.support.deploy import DEPLOY
from tests.support.fault_engine import EngineLog
from tests.support.servers import free_port, start_tram_serve

SHIPPED_GLOBALS = "{\n\temail {$ACME_EMAIL}\n}\n"
AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}


def _caddy() -> str:
    caddy = shutil.which("caddy")
    assert caddy is not None, "Caddy (Debian's package; scripts/setup.sh installs it) is needed"
    return caddy


def _env(home: Path) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "HOME": str(home), "XDG_DATA_HOME": str(home / "data"),
            "XDG_CONFIG_HOME": str(home / "config"), "TRAM_DOMAIN": "localhost",
            "ACME_EMAIL": "ops@example.com"}


def test_the_shipped_caddyfile_is_valid(tmp_path: Path) -> None:
    done = subprocess.run([_caddy(), "validate", "--config", str(DEPLOY / "Caddyfile"),
                           "--adapter", "caddyfile"], env=_env(tmp_path), capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0 and "Valid configuration" in done.stdout + done.stderr, done.stderr
    adapted = subprocess.run([_caddy(), "adapt", "--config", str(DEPLOY / "Caddyfile"),
                              "--adapter", "caddyfile"], env=_env(tmp_path), capture_output=True,
                             text=True, timeout=60, check=True).stdout
    proxy = json.loads(adapted)["apps"]["http"]["servers"]["srv0"]["routes"][0]["handle"][0]
    handlers = {h["handler"]: h for h in proxy["routes"][0]["handle"]}
    # -1 keeps the upstream request going after the client has left.
    assert "flush_interval" not in handlers["reverse_proxy"]
    # Compression for JSON and pages only: never a stream of server-sent events.
    types = handlers["encode"].get("match", {}).get("headers", {}).get("Content-Type", ["*"])
    assert not [t for t in types if fnmatch.fnmatch("text/event-stream", t)], types
    assert [t for t in types if fnmatch.fnmatch("application/json", t)], types


def _loopback_caddyfile(https_port: int, http_port: int, upstream: str, storage: Path) -> str:
    """deploy/Caddyfile as shipped, but for loopback: the global options swapped for a local
    CA and loopback ports, and `tram:4000` for the test's gateway. The site block itself (encode,
    reverse_proxy and its transport) is the shipped one, byte for byte."""
    shipped = (DEPLOY / "Caddyfile").read_text()
    assert shipped.count(SHIPPED_GLOBALS) == 1 and shipped.count("tram:4000") == 1
    local = (f"{{\n\tadmin off\n\tlocal_certs\n\tskip_install_trust\n\tdefault_bind 127.0.0.1\n"
             f"\thttp_port {http_port}\n\thttps_port {https_port}\n"
             f"\tstorage file_system {{\n\t\troot {storage}\n\t}}\n}}\n")
    return shipped.replace(SHIPPED_GLOBALS, local).replace("tram:4000", upstream)


@pytest.fixture
def gateway(tmp_path: Path, fault_engine_server: tuple[str, EngineLog]) -> Iterator[str]:
    """`tram serve` over the fault engine: `slow` streams a chunk every 50 ms, `quiet` answers
    after 10 s (an engine still reading a long prompt, or queueing)."""
    engine = fault_engine_server[0]
    config = (f"models:\n  - {{name: slow, upstreams: [{{url: '{engine}', served_name: slow-stream}}]}}\n"
              f"  - {{name: quiet, upstreams: [{{url: '{engine}', served_name: slow-json}}]}}\n")
    process, url = start_tram_serve(tmp_path, config, master_key=MASTER_KEY)
    try:
        yield url
    finally:
        process.terminate()
        process.communicate(timeout=30)


@pytest.fixture
def caddy(tmp_path: Path, gateway: str) -> Iterator[tuple[str, ssl.SSLContext]]:
    """Caddy with the shipped site block in front of `gateway`: its HTTPS URL and a TLS
    context that trusts Caddy's internal CA and nothing else."""
    https_port, http_port = free_port(), free_port()
    home = tmp_path / "caddy"
    storage = home / "storage"
    caddyfile = home / "Caddyfile"
    home.mkdir()
    caddyfile.write_text(_loopback_caddyfile(https_port, http_port,
                                             gateway.removeprefix("http://"), storage))
    log = (home / "caddy.log").open("w")
    process = subprocess.Popen([_caddy(), "run", "--config", str(caddyfile), "--adapter",
                                "caddyfile"], env=_env(home), stdout=log, stderr=log)
    url = f"https://localhost:{https_port}"
    root = storage / "pki" / "authorities" / "local" / "root.crt"
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, (home / "caddy.log").read_text()
        try:
            context = ssl.create_default_context(cafile=str(root))
            if httpx.get(url + "/health", verify=context, timeout=2).status_code == 200:
                break
        except (OSError, httpx.HTTPError):
            pass
        assert time.monotonic() < deadline, (home / "caddy.log").read_text()
        time.sleep(0.2)
    try:
        yield url, context
    finally:
        process.terminate()
        process.wait(30)
        log.close()


def test_a_stream_through_caddy_and_a_clients_cut_reaches_the_engine(
        caddy: tuple[str, ssl.SSLContext], engine_log: EngineLog) -> None:
    url, context = caddy
    events = []
    with httpx.Client(verify=context, timeout=30) as client:
        started = time.monotonic()
        with client.stream("POST", url + "/v1/chat/completions",
                           headers={**AUTH, "Accept-Encoding": "gzip"},
                           json={"model": "slow", "stream": True, "chunks": 400,
                                 "messages": [{"role": "user", "content": "hi"}]}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert "content-encoding" not in response.headers  # events are never compressed
            assert response.http_version == "HTTP/1.1" and url.startswith("https://")
            for line in response.iter_lines():
                if line.startswith("data: {"):
                    events.append(time.monotonic() - started)
                    if len(events) == 5:
                        break  # the client hangs up mid-stream
        # 5 chunks 50 ms apart come as they are made, not when a buffer fills.
        assert events[-1] < 5, events
        deadline = time.monotonic() + 10
        while not engine_log.cancelled and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(engine_log.cancelled) == 1 and not engine_log.finished, \
            "the engine kept generating after the client had gone"
        # Trạm saw the cut and charged the stream.
        usage = client.get(url + "/admin/usage", params={"by": "model"}, headers=AUTH)
        (row,) = [r for r in usage.json()["data"] if r.get("model") == "slow"]
        assert row["requests"] == 1 and row["estimated_requests"] == 1, row
        assert row["completion_tokens"] >= len(events), row  # what was made is charged
        # JSON (over Caddy's 512-byte minimum) is still compressed.
        document = client.get(url + "/openapi.json", headers={"Accept-Encoding": "gzip"})
        assert document.headers.get("content-encoding") == "gzip" and document.json()["paths"]


def test_a_client_that_gives_up_before_the_first_byte_cancels_the_engine(
        caddy: tuple[str, ssl.SSLContext], engine_log: EngineLog) -> None:
    """The cut that only the request's own cancellation carries: nothing is being written to
    the client when it leaves (a long prompt being read, a queue), so nothing fails on a write.
    With `flush_interval -1` Caddy kept the request to Trạm open and the engine worked on."""
    url, context = caddy
    with (httpx.Client(verify=context, timeout=httpx.Timeout(30, read=1.0)) as client,
          pytest.raises(httpx.ReadTimeout)):  # the client gives up after a second
        client.post(url + "/v1/chat/completions", headers=AUTH,
                    json={"model": "quiet", "messages": [{"role": "user", "content": "hi"}]})
    deadline = time.monotonic() + 5  # the engine would answer at 10 s
    while not engine_log.cancelled and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(engine_log.cancelled) == 1, "the engine went on working for a client that left"
