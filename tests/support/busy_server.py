"""A test server: an ASGI app that burns `BUSY_MS` of CPU per request (so one turn of the
event loop that serves many ready connections takes long), on Trạm's HTTP protocol and a given
event loop. Run as `python -m tests.support.busy_server PORT LOOP` (LOOP: uvicorn's `loop`
setting, e.g. `tram.server.loop:new_event_loop` or `uvloop`)."""

from __future__ import annotations

import sys
import time
from typing import Any

import uvicorn

from tram.config import ServerConfig
from tram.server import ConnectionGuard, gateway_config

BUSY_MS = 3.0
ANSWER = b"ok"


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    await receive()
    ends = time.perf_counter() + BUSY_MS / 1000
    while time.perf_counter() < ends:
        pass
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"%d" % len(ANSWER))]})
    await send({"type": "http.response.body", "body": ANSWER})


if __name__ == "__main__":
    limits = ServerConfig()
    uvicorn.Server(gateway_config(
        app, limits, guard=ConnectionGuard(limits), host="127.0.0.1", port=int(sys.argv[1]),
        loop=sys.argv[2], lifespan="off", log_level="warning", backlog=2048)).run()
