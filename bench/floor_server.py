"""BENCHMARK REFERENCE, not a gateway: the forward-only ASGI app of `bench/inprocess.py` under
uvicorn (uvloop + httptools), as `tram serve` runs. It prices what any Python proxy on this
server stack pays before doing anything a gateway does.

    python -m bench.floor_server ENGINE_URL PORT
"""

from __future__ import annotations

import sys

import uvicorn

from bench.inprocess import floor_app


def main() -> None:
    engine, port = sys.argv[1], int(sys.argv[2])
    uvicorn.run(floor_app(engine), host="127.0.0.1", port=port, loop="uvloop",
                http="httptools", access_log=False, log_level="warning", lifespan="off")


if __name__ == "__main__":
    main()
