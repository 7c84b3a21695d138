"""The embedded engine (llama-server) answers the gateway alone: it listens on a Unix socket
in a folder only Trạm's user can enter (no TCP port at all) and refuses every path but
/health without its key, which is passed in its environment and shown nowhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.tram_up import TramUp, children_of

pytestmark = pytest.mark.engine

PATHS = [("POST", "/v1/chat/completions"), ("POST", "/completion"), ("POST", "/v1/embeddings"),
         ("POST", "/tokenize"), ("GET", "/metrics"), ("GET", "/props"), ("GET", "/slots"),
         ("GET", "/v1/models"), ("POST", "/v1/messages"), ("POST", "/v1/responses")]


@pytest.mark.parametrize(("method", "path"), PATHS)
def test_every_path_needs_the_engines_key(embedded: TramUp, method: str, path: str) -> None:
    body = {"model": "x", "messages": [{"role": "user", "content": "hi"}], "prompt": "hi",
            "content": "hi", "input": "hi", "max_tokens": 1}
    with embedded.engine_client("qwen-text", timeout=30) as engine:
        refused = engine.request(method, path, json=body if method == "POST" else None)
        assert refused.status_code == 401, refused.text
        key = {"Authorization": "Bearer " + embedded.engine_key("qwen-text")}
        allowed = engine.request(method, path, json=body if method == "POST" else None,
                                 headers=key)
        assert allowed.status_code != 401


def test_health_is_open_and_nothing_listens_on_tcp(embedded: TramUp) -> None:
    where = embedded.engine_urls()["qwen-text"]
    assert where.startswith("unix:")
    assert Path(where.removeprefix("unix:")).parent.stat().st_mode & 0o777 == 0o700
    with embedded.engine_client("qwen-text", timeout=10) as engine:
        assert engine.get("/health").status_code == 200
    inodes = set()
    for pid in children_of(embedded.process.pid):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = str(fd.readlink())
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            assert not (fields[3] == "0A" and fields[9] in inodes), line
    key = embedded.engine_key("qwen-text")
    assert key not in embedded.text()
    assert all(key.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
               for pid in children_of(embedded.process.pid))
