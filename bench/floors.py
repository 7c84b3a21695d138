"""BENCHMARK REFERENCES, not gateways: where a Python forward's CPU goes, layer by layer.

    python -m bench floors [--seconds 5] [--rounds 3]

Each server below runs alone on core 1 (uvloop, as `tram serve` does) in front of the fake
engine; wrk (c=64, keep-alive) and the engine share core 0. CPU per request is the server
process's CPU over the requests wrk completed. From the cheapest to Trạm's own forward:

  proto-fixed         an asyncio Protocol with llhttp's parser (httptools) answering a fixed
                      JSON body: Python's floor for serving a request at all
  asgi-fixed          uvicorn (httptools) + an ASGI app answering the same body: what the
                      ASGI server adds
  proto-forward-raw   the Protocol server forwarding each request over a keep-alive engine
                      connection of its own, with callbacks only (no task, no future): the
                      floor of forwarding in asyncio (two more socket calls, one more parse)
  proto-forward-tram  the Protocol server forwarding with Trạm's engine client, in a task per
                      request: what tasks, futures and the pooled client add
  asgi-forward-tram   uvicorn + the forward-only ASGI app with Trạm's engine client
                      (bench/floor_server.py: the gateway bench's "python floor")
  tram-fixed          asgi-fixed on Trạm's own HTTP protocol (tram/server) instead of
                      uvicorn's: what Trạm's gateway pays to serve a request
  tram-forward-tram   asgi-forward-tram on Trạm's own HTTP protocol

    python -m bench.floors serve KIND ENGINE_URL PORT     # one server, for a look by hand
"""

from __future__ import annotations

import asyncio
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httptools
import uvloop

from bench.httpproto import RequestProtocol, http_response

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("proto-fixed", "asgi-fixed", "tram-fixed", "proto-forward-raw", "proto-forward-tram",
         "asgi-forward-tram", "tram-forward-tram")
FIXED = (b'{"id":"chatcmpl-bench","object":"chat.completion","created":0,"model":"bench",'
         b'"choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"},'
         b'"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1,'
         b'"total_tokens":6}}')


class _Server(RequestProtocol):
    """Requests in; `answer(body, reply)` decides what goes back."""

    def __init__(self, answer: Callable[[bytes, Callable[[bytes], None]], Any]) -> None:
        super().__init__()
        self._answer = answer

    def request(self, url: bytes, body: bytes) -> None:
        self._answer(body, self.transport.write)


class _RawUpstream(asyncio.Protocol):
    """One keep-alive engine connection answering one client connection's requests in order."""

    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._body: list[bytes] = []
        self.replies: list[Callable[[bytes], None]] = []
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._parser.feed_data(data)

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        body, self._body = b"".join(self._body), []
        self.replies.pop(0)(http_response(body))


Answer = Callable[[bytes, Callable[[bytes], None]], None]
_TASKS: set[asyncio.Task[None]] = set()  # referenced until done


def _spawn(coroutine: Any) -> None:
    task = asyncio.get_running_loop().create_task(coroutine)
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)


def _fixed(body: bytes, reply: Callable[[bytes], None]) -> None:
    reply(http_response(FIXED))


def _raw_server(engine: str) -> _Server:
    """A Protocol server whose connection forwards over an engine connection of its own."""
    parts = urlsplit(engine)
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: {parts.netloc}\r\n"
            "content-type: application/json\r\ncontent-length: ").encode()
    pending: list[tuple[bytes, Callable[[bytes], None]]] = []
    server = _Server(lambda body, reply: pending.append((body, reply)))

    async def pair() -> None:
        _, upstream = await asyncio.get_running_loop().create_connection(
            _RawUpstream, parts.hostname or "127.0.0.1", parts.port or 80)

        def forward(body: bytes, reply: Callable[[bytes], None]) -> None:
            upstream.replies.append(reply)
            upstream.transport.write(head + b"%d\r\n\r\n" % len(body) + body)

        server._answer = forward
        for body, reply in pending:
            forward(body, reply)

    _spawn(pair())
    return server


def _tram_forward(engine: str) -> Answer:
    """Trạm's engine client, one task per request."""
    from tram.config import Timeouts
    from tram.routing.registry import Replica
    from tram.transport.upstream import UpstreamClient

    client, timeouts = UpstreamClient(), Timeouts()
    replica = Replica(url=engine + "/v1", served_name="bench")

    async def one(body: bytes, reply: Callable[[bytes], None]) -> None:
        response = await client.send(replica, "/chat/completions", body, "bench", timeouts,
                                     60.0)
        try:
            answer = await client.read_body(response, 60.0)
        finally:
            response.close()
        reply(http_response(answer))

    return lambda body, reply: _spawn(one(body, reply))


async def _fixed_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/json"), (b"content-length", b"%d" % len(FIXED))]})
    await send({"type": "http.response.body", "body": FIXED})


async def _serve(kind: str, engine: str, port: int) -> None:
    if kind.startswith(("asgi", "tram")):
        import uvicorn

        from bench.inprocess import floor_app
        from tram.config import ServerConfig
        from tram.server import ConnectionGuard, gateway_config

        app = _fixed_app if kind.endswith("-fixed") else floor_app(engine)
        # Trạm's protocol, or uvicorn's own as uvicorn runs by default; on the loop this
        # process already runs, for every kind alike.
        common: dict[str, Any] = {"host": "127.0.0.1", "port": port, "access_log": False,
                                  "log_level": "warning", "lifespan": "off", "loop": "none"}
        limits = ServerConfig()
        config = gateway_config(app, limits, guard=ConnectionGuard(limits), **common) \
            if kind.startswith("tram") else uvicorn.Config(app, http="httptools", **common)
        await uvicorn.Server(config).serve()
        return
    make: Callable[[], _Server]
    if kind == "proto-fixed":
        make = lambda: _Server(_fixed)  # noqa: E731
    elif kind == "proto-forward-tram":
        forward = _tram_forward(engine)
        make = lambda: _Server(forward)  # noqa: E731
    else:
        make = lambda: _raw_server(engine)  # noqa: E731
    listener = await asyncio.get_running_loop().create_server(make, "127.0.0.1", port,
                                                              backlog=4096)
    async with listener:
        await listener.serve_forever()


def run(seconds: float, rounds: int) -> str:
    from bench.gateway import _cpu_seconds, _start, _wait, stop_processes
    from bench.loadgen import free_port, wrk

    engine_port = free_port()
    engine = _start([sys.executable, "-m", "bench.fake_engine", "--port", str(engine_port)],
                    "0", cwd=ROOT)
    engine_url = f"http://127.0.0.1:{engine_port}"
    samples: dict[str, list[tuple[float, float]]] = {kind: [] for kind in KINDS}
    try:
        _wait(engine_url)
        for _ in range(rounds):  # interleaved, so the machine's drift falls on all alike
            for kind in KINDS:
                port = free_port()
                server = _start([sys.executable, "-m", "bench.floors", "serve", kind,
                                 engine_url, str(port)], "1", cwd=ROOT)
                try:
                    url = f"http://127.0.0.1:{port}"
                    _wait(url, "/v1/chat/completions")
                    wrk(url, 64, 1, "0")  # warm-up
                    before = _cpu_seconds(server.pid)
                    result = wrk(url, 64, seconds, "0")
                    cpu = (_cpu_seconds(server.pid) - before) * 1e6 / max(result.requests, 1)
                    samples[kind].append((cpu, result.rps))
                finally:
                    stop_processes([server])
    finally:
        stop_processes([engine])
    lines = [f"python -m bench floors --seconds {seconds:g} --rounds {rounds}", "",
             "| server (c=64, one core) | µs CPU per request, median (min–max) | req/s, median |",
             "| --- | --- | --- |"]
    for kind in KINDS:
        cpu = [c for c, _ in samples[kind]]
        lines.append(f"| {kind} | {statistics.median(cpu):.0f} ({min(cpu):.0f}–{max(cpu):.0f}) "
                     f"| {statistics.median(r for _, r in samples[kind]):,.0f} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if argv[:1] == ["serve"]:
        uvloop.run(_serve(argv[1], argv[2], int(argv[3])))
        return 0
    seconds = float(argv[argv.index("--seconds") + 1]) if "--seconds" in argv else 5.0
    rounds = int(argv[argv.index("--rounds") + 1]) if "--rounds" in argv else 3
    print(run(seconds, rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
