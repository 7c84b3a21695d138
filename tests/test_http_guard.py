"""The HTTP server bounds every client (`tram serve` as an operator runs it, on loopback):
head size, heads and bodies that stop arriving, a connection cap, pipelined requests held to a
bound and answered in order, malformed requests (and HTTP/0.9) answered in the OpenAI shape
after the valid ones before them, refused requests that write nothing, no redirect built from
Host, and a store private to its user."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import MASTER_KEY
from tests.support.fault_engine import EngineLog
from tests.support.raw_http import RESET, STILL_OPEN, connect, read_until_closed
from tests.support.servers import start_tram_serve

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}


@pytest.fixture
def serve(tmp_path: Path, fault_engine_server: tuple[str, EngineLog]) -> Iterator[object]:
    """`serve(server_yaml)` → the URL of a `tram serve` with that `server:` section."""
    started: list[subprocess.Popen[str]] = []

    def start(server: str = "{}", log_level: str = "info") -> str:
        process, url = start_tram_serve(
            tmp_path, f"server: {server}\nmodels: [{{name: qwen-text, upstreams: "
                      f"[{{url: '{fault_engine_server[0]}', served_name: echo}}]}}]\n",
            log_level=log_level)
        started.append(process)
        return url

    yield start
    for process in started:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    started.clear()


def _json_error(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"content-type: application/json" in head.lower(), head
    return status, orjson.loads(body)["error"]


def _pid(url: str) -> int:
    port = url.rsplit(":", 1)[1]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"serve" in cmdline and port.encode() in cmdline:
                return int(entry.name)
    raise AssertionError("gateway process not found")


def _rss_mb(url: str, pid: int | None = None) -> float:
    for line in Path(f"/proc/{pid or _pid(url)}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _metric(url: str, name: str, **labels: str) -> float:
    text = httpx.get(url + "/metrics", headers=AUTH).text
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{wanted}}}"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_head_over_the_limit_is_431_and_memory_stays_flat(serve) -> None:
    url = serve()
    before = _rss_mb(url)
    # 20 unauthenticated connections each pushing an unfinished 8 MB header.
    socks = [connect(url) for _ in range(20)]
    answers = []
    for sock in socks:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Pad: ")
        try:
            for _ in range(128):  # 8 MB in 64 KB writes; the server hangs up part way
                sock.sendall(b"a" * 65536)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answers.append(read_until_closed(sock))
    grown = _rss_mb(url) - before
    for raw in answers:
        assert raw.startswith(b"HTTP/1.1 431"), raw[:200]
        status, error = _json_error(raw.replace(RESET, b""))
        assert (status, error["code"]) == (431, "request_headers_too_large")
    assert grown < 20, f"the gateway grew by {grown:.0f} MB"
    # A complete 16 MB header is refused the same way, never answered 200.
    sock = connect(url)
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * (16 << 20) + b"\r\n\r\n")
    assert read_until_closed(sock).startswith(b"HTTP/1.1 431")
    # A head just under the limit is still served.
    ok = httpx.get(url + "/health", headers={"X-Pad": "a" * 60_000})
    assert ok.status_code == 200
    assert _metric(url, "tram_connections_closed_total", reason="head_too_large") == 21


def test_heads_and_bodies_that_stop_arriving_are_closed(serve) -> None:
    url = serve("{head_timeout: 1, body_timeout: 1}")
    slow_heads = [connect(url) for _ in range(200)]
    for sock in slow_heads:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n")  # never finished
    lying = [connect(url) for _ in range(50)]
    for sock in lying:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
                     b"Authorization: Bearer " + MASTER_KEY.encode() + b"\r\n\r\n{\"model\"")
    silent = connect(url)  # connects and says nothing
    started = time.monotonic()
    answers = [read_until_closed(sock) for sock in (*slow_heads, *lying, silent)]
    assert time.monotonic() - started < 8
    assert all(not raw.endswith(STILL_OPEN) for raw in answers)
    for raw in answers[:250]:
        status, error = _json_error(raw)
        assert (status, error["code"]) == (408, "request_timeout")
    assert answers[250] == b""  # nothing asked, nothing answered: only closed
    assert _metric(url, "tram_connections_closed_total", reason="head_timeout") == 201
    assert _metric(url, "tram_connections_closed_total", reason="body_timeout") == 50
    # A body that keeps arriving, however slowly, is not cut: each pause is under the bound.
    body = orjson.dumps({"model": "qwen-text", "messages": [{"role": "user", "content": "hi"}]})

    def trickle() -> Iterator[bytes]:
        for i in range(0, len(body), len(body) // 4 + 1):
            time.sleep(0.6)
            yield body[i:i + len(body) // 4 + 1]

    answer = httpx.post(url + "/v1/chat/completions", headers={**AUTH, "Content-Length":
                                                               str(len(body))},
                        content=trickle(), timeout=10)
    assert answer.status_code == 200, answer.text


def test_every_worker_applies_the_configured_bounds(
        tmp_path: Path, fault_engine_server: tuple[str, EngineLog]) -> None:
    # With --workers N each worker builds its own app; its connections take that app's guard.
    process, url = start_tram_serve(
        tmp_path, f"server: {{max_head_bytes: 4096}}\nmodels: [{{name: qwen-text, upstreams: "
                  f"[{{url: '{fault_engine_server[0]}', served_name: echo}}]}}]\n", workers=2)
    try:
        for _ in range(6):
            sock = connect(url)
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 5000 +
                         b"\r\n\r\n")
            assert read_until_closed(sock).startswith(b"HTTP/1.1 431")
        assert httpx.get(url + "/health", headers={"X-Pad": "a" * 3000}).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)


def test_connections_past_the_cap_are_refused_at_once(serve) -> None:
    url = serve("{max_connections: 5}")
    held = [connect(url) for _ in range(5)]
    time.sleep(0.2)
    extra = connect(url)
    status, error = _json_error(read_until_closed(extra, 2))
    assert (status, error["code"]) == (503, "server_busy")
    for sock in held:
        sock.close()
    time.sleep(0.2)
    assert httpx.get(url + "/health").status_code == 200  # room again once they left


BARE = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"


def test_a_pipelined_burst_is_answered_in_order_within_bounded_memory(serve) -> None:
    # Issue 23, item 3: one connection writes 1.5 MiB of pipelined `GET /health` (~45,000
    # requests, every 64th with an id) and reads the answers as they come. The gateway used to
    # parse everything it was sent before answering it (+65 MB here); now it reads on only
    # while what waits on that connection is small.
    url = serve(log_level="warning")  # (not a log line per request into an unread pipe)
    pid = _pid(url)
    count = (3 << 19) // len(BARE)
    burst = b"".join(BARE if i % 64 else b"GET /health HTTP/1.1\r\nHost: x\r\nX-Request-ID: "
                     b"n%d\r\n\r\n" % i for i in range(count))
    idle = peak = _rss_mb(url, pid)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss_mb(url, pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    sock = connect(url)
    sock.settimeout(60)
    threading.Thread(target=sock.sendall, args=(burst,), daemon=True).start()
    parts, answered, tail = [], 0, b""
    try:
        while answered < count and (data := sock.recv(1 << 20)):
            parts.append(data)
            answered += (tail + data).count(b"HTTP/1.1 ")
            tail = (tail + data)[-8:]
    finally:
        done.set()
        sampler.join()
    received = b"".join(parts)
    assert received.count(b"HTTP/1.1 200 OK\r\n") == answered == count
    assert re.findall(rb"x-request-id: (n\d+)", received) == \
        [b"n%d" % i for i in range(0, count, 64)]
    assert peak - idle < 20, f"the gateway grew by {peak - idle:.0f} MB"


MALFORMED = {
    "content-length and transfer-encoding":
        b"POST /v1/models HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "negative length": b"POST /v1/models HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    "plus sign length": b"POST /v1/models HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello",
    "two lengths": b"POST /v1/models HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
                   b"Content-Length: 2\r\n\r\nab",
    "nul in a header": b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "bad chunk size": b"POST /v1/models HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                      b"\r\nzz\r\nhello\r\n0\r\n\r\n",
    "HTTP/0.9 (no version)": b"GET /health\r\nHost: x\r\n\r\n",
    "HTTP/0.9, said": b"GET /health HTTP/0.9\r\n\r\n",
    "HTTP/2.0 over HTTP/1": b"GET /health HTTP/2.0\r\nHost: x\r\n\r\n",
}


def test_malformed_requests_get_an_openai_error(serve) -> None:
    url = serve()
    for name, raw in MALFORMED.items():
        sock = connect(url)
        sock.sendall(raw)
        status, error = _json_error(read_until_closed(sock))
        assert (status, error["code"], error["type"]) == \
            (400, "invalid_http_request", "invalid_request_error"), name
    assert _metric(url, "tram_connections_closed_total", reason="invalid_http") == len(MALFORMED)


def test_a_valid_request_before_a_refused_one_is_answered_first(serve) -> None:
    # Pipelined on one connection: the valid request's answer, then the refusal, then close.
    url = serve()
    refused = {**{name: (raw, 400) for name, raw in MALFORMED.items()},
               "a head over the limit": (b"GET /health HTTP/1.1\r\nX-Pad: " + b"a" * 70_000 +
                                         b"\r\n\r\n", 431)}
    for name, (raw, status) in refused.items():
        sock = connect(url)
        sock.sendall(BARE + raw)
        answer = read_until_closed(sock)
        first, _, rest = answer.partition(b'{"status":"ok"}')
        assert first.startswith(b"HTTP/1.1 200 OK"), (name, answer[:300])
        assert _json_error(rest)[0] == status, name


def test_refused_requests_write_nothing_and_are_counted(serve, tmp_path: Path) -> None:
    url = serve()
    body = {"model": "qwen-text", "messages": [{"role": "user", "content": "hi"}]}
    for headers in ({}, {"Authorization": "Bearer sk-wrong"}) * 25:
        assert httpx.post(url + "/v1/chat/completions", json=body, headers=headers).status_code == 401
    journal = tmp_path / "data" / "journal"
    written = sum(f.stat().st_size for f in journal.glob("*")) if journal.exists() else 0
    assert written == 0
    assert httpx.get(url + "/admin/usage", headers=AUTH).json()["data"] == []
    assert _metric(url, "tram_unauthenticated_requests_total", code="missing_api_key") == 25
    assert _metric(url, "tram_unauthenticated_requests_total", code="invalid_api_key") == 25
    # A request with a valid key is still recorded as before.
    assert httpx.post(url + "/v1/chat/completions", json=body, headers=AUTH).status_code == 200
    assert httpx.get(url + "/admin/usage", headers=AUTH).json()["data"][0]["requests"] == 1


def test_no_redirect_is_built_from_the_host_header(serve) -> None:
    url = serve()
    answer = httpx.get(url + "/health/", headers={"Host": "evil.example"})
    assert "location" not in answer.headers
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"


def test_the_store_is_private_to_its_user(serve, tmp_path: Path) -> None:
    url = serve()
    assert httpx.post(url + "/v1/chat/completions", headers=AUTH, json={
        "model": "qwen-text", "messages": [{"role": "user", "content": "hi"}]}).status_code == 200
    httpx.get(url + "/admin/usage", headers=AUTH)  # the row is written: WAL and SHM exist
    data = tmp_path / "data"
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    files = [data / "tram.db", data / "tram.db-wal", data / "tram.db-shm"]
    assert all(f.exists() for f in files)
    assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in files} == \
        {f.name: 0o600 for f in files}


def test_a_store_made_by_an_older_version_is_tightened(tmp_path: Path) -> None:
    from tram.app import build_state
    from tram.config import Settings, TramConfig

    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    (data / "tram.db").write_bytes(b"")
    os.chmod(data / "tram.db", 0o644)
    build_state(Settings(master_key=MASTER_KEY, master_key_source="test", config_path=None,
                         data_dir=data), TramConfig())
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "tram.db").stat().st_mode) == 0o600
