"""The `tram up` verb."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from tram.config import ConfigError, load_settings
from tram.logs import setup_logging

__all__ = ["add_up_parser"]


def _up(args: argparse.Namespace) -> int:
    from tram.engines.up import load_up_config, run_up
    from tram.server.loop import new_event_loop

    try:
        settings = load_settings(config_path=args.config, generate_key=True)
        config = load_up_config(settings, args.model or [], args.profile)
    except ConfigError as exc:
        print(f"tram: {exc}", file=sys.stderr)
        return 2
    setup_logging(args.log_level, args.log_format)
    host = args.host or config.server.host
    port = args.port or config.server.port
    try:
        # The gateway's loop, as `tram serve` runs it (uvloop, greedy accept: server/loop.py).
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            return runner.run(run_up(settings, config, host, port))
    except ConfigError as exc:
        print(f"tram: {exc}", file=sys.stderr)
        return 2


def add_up_parser(verbs: Any) -> None:
    up = verbs.add_parser(
        "up", help="start the engines and the gateway (the embedded CPU default without a config)",
        description="Start every engine named in tram.yaml (or the embedded SmolLM2 engine when "
                    "there is no tram.yaml), wait until each answers, then serve the gateway. "
                    "Ctrl-C or SIGTERM stops the gateway first, then the engines.")
    up.add_argument("--config", type=Path, help="tram.yaml (default: $TRAM_CONFIG or ./tram.yaml; "
                                                "else the embedded profile)")
    up.add_argument("--profile", metavar="NAME",
                    help="a shipped profile instead of tram.yaml: qwen (the guide's deployment: "
                         "Qwen3-8B as qwen-text and Qwen3-VL-8B-Instruct as qwen-vl on vLLM)")
    up.add_argument("--model", action="append", metavar="ALIAS=PATH",
                    help="serve a local checkpoint (.gguf file or Hugging Face folder) under ALIAS; "
                         "repeatable, e.g. --model qwen-text=./Qwen3-0.6B-Q8_0.gguf")
    up.add_argument("--host", help="gateway listen address (default 0.0.0.0)")
    up.add_argument("--port", type=int, help="gateway port (default 4000)")
    up.add_argument("--log-level", default="info")
    up.add_argument("--log-format", choices=["text", "json"],
                    help="one readable line per event, or JSON lines (default: text at a "
                         "terminal, else json; or TRAM_LOG_FORMAT)")
    up.set_defaults(run=_up)
