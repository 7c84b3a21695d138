"""FAKE `vllm` EXECUTABLE for testing the vLLM launch path (vLLM itself needs a GPU).

`python -m tests.support.fake_vllm serve MODEL --host H --port P --served-model-name N ...`
writes its argv to $FAKE_VLLM_ARGV and serves /health plus the fault-injection engine's routes.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import uvicorn
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support.fault_engine import EngineLog, fault_engine


def main() -> None:
    Path(os.environ["FAKE_VLLM_ARGV"]).write_text("\n".join(sys.argv[1:]))
    parser = argparse.ArgumentParser()
    parser.add_argument("verb")
    parser.add_argument("model")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--served-model-name")
    args, _ = parser.parse_known_args()
    app = fault_engine(EngineLog())
    app.router.routes.append(Route("/health", lambda request: JSONResponse({})))
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
