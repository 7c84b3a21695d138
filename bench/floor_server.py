"""BENCHMARK REFERENCE, not a gateway: the forward-only ASGI app of `bench/inprocess.py` on the
server stack `tram serve` runs (uvicorn with Trạm's own HTTP protocol and loop;
`--uvicorn-protocol` for uvicorn's httptools protocol on plain uvloop instead, as before issue
16). It prices what any Python proxy on this stack pays before doing anything a gateway does.

    python -m bench.floor_server ENGINE_URL PORT [--uvicorn-protocol]
"""

from __future__ import annotations

import sys
from typing import Any

import uvicorn

from bench.inprocess import floor_app
from tram.config import ServerConfig
from tram.server import ConnectionGuard, gateway_config


def main() -> None:
    engine, port = sys.argv[1], int(sys.argv[2])
    common: dict[str, Any] = {"host": "127.0.0.1", "port": port, "access_log": False,
                              "log_level": "warning", "lifespan": "off"}
    if "--uvicorn-protocol" in sys.argv:
        uvicorn.run(floor_app(engine), http="httptools", loop="uvloop", **common)
        return
    limits = ServerConfig()
    uvicorn.Server(gateway_config(floor_app(engine), limits, guard=ConnectionGuard(limits),
                                  **common)).run()


if __name__ == "__main__":
    main()
