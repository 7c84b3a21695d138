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
from tram.server import protocol_options


def main() -> None:
    engine, port = sys.argv[1], int(sys.argv[2])
    protocol: dict[str, Any] = {"http": "httptools", "loop": "uvloop"} \
        if "--uvicorn-protocol" in sys.argv else protocol_options()
    uvicorn.run(floor_app(engine), host="127.0.0.1", port=port, access_log=False,
                log_level="warning", lifespan="off", **protocol)


if __name__ == "__main__":
    main()
