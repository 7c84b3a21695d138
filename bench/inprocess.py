"""The gateway's own CPU per request, in process: no HTTP server in front, no load generator.

    python -m bench inprocess [--requests N] [--concurrency C] [--rounds R] [--ablate]
    py-spy record -o profile.svg -- python -m bench inprocess     # where that CPU goes

The benchmark fake engine runs in its own process (pinned to core 0); this process (core 1)
builds the real Trạm app and calls it as an ASGI server would, C requests at a time, for the
master key, a virtual key with limits (usage written to SQLite on both), and a streaming
request. It reports CPU µs per request (`time.process_time`, so the machine's other load
counts far less than in end-to-end runs). A floor is measured in the same run: a 20-line ASGI
app that forwards the same request with the same engine client, nothing else; the gap between
the two is what Trạm's features cost. `--ablate` adds rows with one feature switched off at a
time (by the harness, for pricing it; Trạm has no such switches).
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvloop

from bench.loadgen import KEY, free_port

ROOT = Path(__file__).resolve().parents[1]
BODY = orjson.dumps({"model": "bench", "messages": [{"role": "user", "content": "hi"}]})
STREAM_BODY = orjson.dumps({"model": "bench", "stream": True,
                            "messages": [{"role": "user", "content": "hi"}]})
# The same stream with the engine writing one chunk a millisecond (as engines do: a token at a
# time), so each chunk is read, relayed and sent on its own.
PACED_BODY = orjson.dumps({"model": "bench", "stream": True, "bench_delay_ms": 1,
                           "messages": [{"role": "user", "content": "hi"}]})

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


async def _one(app: App, token: str, body: bytes) -> int:
    done = asyncio.Event()
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif not message.get("more_body", False):
            done.set()

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/v1/chat/completions",
             "raw_path": b"/v1/chat/completions", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"bench"), (b"authorization", f"Bearer {token}".encode()),
                         (b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2)}
    await app(scope, receive, send)
    done.set()
    return status


async def _drive(app: App, token: str, body: bytes, requests: int,
                 concurrency: int) -> tuple[float, float]:
    """CPU µs per request and mean latency µs, `requests` requests `concurrency` at a time."""
    for _ in range(50):  # warm-up: connections, caches
        assert await _one(app, token, body) == 200
    remaining = requests

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            status = await _one(app, token, body)
            assert status == 200, status

    started, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    # Mean latency by Little's law: `concurrency` requests were always in flight.
    latency = (time.perf_counter() - wall) * 1e6 * concurrency / requests
    return (time.process_time() - started) * 1e6 / requests, latency


def floor_app(engine: str) -> App:
    """Forward the body to the engine with Trạm's own engine client; nothing else."""
    from tram.config import Timeouts
    from tram.routing.registry import Replica
    from tram.transport.upstream import UpstreamClient

    client = UpstreamClient()
    replica = Replica(url=engine + "/v1", served_name="bench")
    timeouts = Timeouts()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        message = await receive()
        response = await client.send(replica, "/chat/completions", message["body"], "bench",
                                     timeouts, 60.0)
        try:
            body = await client.read_body(response, 60.0)
        finally:
            response.close()
        await send({"type": "http.response.start", "status": response.status_code,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})

    return app


async def _lifespan(app: App) -> Callable[[], Awaitable[None]]:
    to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}},
                                   to_app.get, from_app.put))
    await to_app.put({"type": "lifespan.startup"})
    started = await from_app.get()
    assert started["type"] == "lifespan.startup.complete", started

    async def shutdown() -> None:
        await to_app.put({"type": "lifespan.shutdown"})
        await from_app.get()
        await task

    return shutdown


async def _measure(engine: str, workdir: Path, requests: int, concurrency: int,
                   rounds: int, ablate: bool) -> list[str]:
    from tram.app import create_app
    from tram.config import Settings, parse_config

    settings = Settings(master_key=KEY, master_key_source="bench", config_path=None,
                        database_url=None, data_dir=workdir / "data")
    config = parse_config({"models": [{"name": "bench", "upstreams": [
        {"url": engine + "/v1", "served_name": "bench"}], "health": {"probe_interval": 3600}}]},
        "bench")
    app = create_app(settings, config)
    shutdown = await _lifespan(app)
    try:
        virtual = await _create_key(app)
        floor = floor_app(engine)
        paths: list[tuple[str, App, str, bytes, int]] = [
            ("floor: forward only", floor, KEY, BODY, requests),
            ("tram, master key", app, KEY, BODY, requests),
            ("tram, virtual key + limits", app, virtual, BODY, requests),
            ("tram, master key, stream of 20", app, KEY, STREAM_BODY, requests // 4),
            ("tram, master key, stream of 20 paced 1 ms", app, KEY, PACED_BODY, requests // 8)]
        # Interleaved rounds, so that the machine's load drifts over all paths alike.
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name, *_ in paths}
        ablations = _ablations(app) if ablate else {}
        samples |= {f"tram, master key, without {name}": [] for name in ablations}
        for _ in range(rounds):
            for name, target, token, body, count in paths:
                samples[name].append(await _drive(target, token, body, count, concurrency))
            for name, (off, on) in ablations.items():
                off()
                try:
                    samples[f"tram, master key, without {name}"].append(
                        await _drive(app, KEY, BODY, requests, concurrency))
                finally:
                    on()
    finally:
        await shutdown()
    floor_us = statistics.median(cpu for cpu, _ in samples[paths[0][0]])
    lines = ["| path | CPU µs per request, median (min) | × floor | mean latency µs, median |",
             "| --- | --- | --- | --- |"]
    for name, measured in samples.items():
        cpu = [c for c, _ in measured]
        latency = statistics.median(w for _, w in measured)
        lines.append(f"| {name} | {statistics.median(cpu):.0f} ({min(cpu):.0f}) | "
                     f"{statistics.median(cpu) / floor_us:.2f} | {latency:.0f} |")
    return lines


def _ablations(app: Any) -> dict[str, tuple[Callable[[], None], Callable[[], None]]]:
    """For measuring only: each feature switched off in turn, to price it (the difference to
    the full path). Trạm itself has no such switches."""
    import tram.api.model as chat_module

    state = app.state
    usage, metrics = state.usage, state.metrics
    async def no_watcher(receive: Any, work: Any, record: Any, ticker: Any = None) -> Any:
        return await work

    def journal(off: bool) -> None:
        spool = usage._spool
        spool.journal_failed = off  # no journal: begin() and record() skip it
        if off and spool.journal is not None:
            spool.journal.close(remove=False)
            spool.journal = None

    def patch(target: Any, name: str, value: Any) -> tuple[Callable[[], None],
                                                            Callable[[], None]]:
        original = getattr(target, name)
        return (lambda: setattr(target, name, value), lambda: setattr(target, name, original))

    return {
        "the journal": (lambda: journal(True), lambda: journal(False)),
        "usage rows": patch(usage, "record", lambda event: None),
        "metrics": patch(metrics, "observe_request", lambda *args: None),
        "the disconnect watcher": patch(chat_module, "cancel_on_disconnect", no_watcher),
    }


async def _create_key(app: App) -> str:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        made = await client.post("/admin/keys", headers={"Authorization": f"Bearer {KEY}"},
                                 json={"name": "bench", "rpm": 10**9, "tpm": 10**9,
                                       "max_concurrency": 10**6})
        key: str = made.json()["key"]
        return key


def main(argv: list[str]) -> int:
    requests = int(argv[argv.index("--requests") + 1]) if "--requests" in argv else 4_000
    rounds = int(argv[argv.index("--rounds") + 1]) if "--rounds" in argv else 5
    concurrency = (int(argv[argv.index("--concurrency") + 1]) if "--concurrency" in argv
                   else 16)
    port = free_port()
    engine_process = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, "-m", "bench.fake_engine", "--port", str(port)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.sched_setaffinity(0, {1 % (os.cpu_count() or 1)})
    engine = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(engine + "/v1/models", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        with tempfile.TemporaryDirectory(prefix="tram-inprocess-") as workdir:
            # uvloop, as `tram serve` runs (uvicorn picks it when installed)
            lines = uvloop.run(_measure(engine, Path(workdir), requests, concurrency,
                                           rounds, "--ablate" in argv))
    finally:
        engine_process.send_signal(signal.SIGTERM)
        engine_process.wait(10)
    print(f"python -m bench inprocess --requests {requests} --concurrency {concurrency} "
          f"--rounds {rounds}{' --ablate' if '--ablate' in argv else ''}")
    print("\n".join(lines))
    return 0
