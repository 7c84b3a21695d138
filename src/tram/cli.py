"""The `tram` command: up · serve · keys · usage · clients."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from tram import __version__
from tram.config import ConfigError, Settings, TramConfig, load_config, load_settings
from tram.logs import resolve_format, setup_logging

__all__ = ["main"]

EXIT_CONFIG = 2


def _fail(message: str) -> int:
    print(f"tram: {message}", file=sys.stderr)
    return EXIT_CONFIG


def load_for_serve(config_path: Path | None) -> tuple[Settings, TramConfig]:
    """Settings and config for the gateway; raises ConfigError with a one-line message."""
    settings = load_settings(config_path=config_path)
    if settings.config_path is None:
        raise ConfigError("no config: pass --config tram.yaml or set TRAM_CONFIG "
                          "(`tram up` runs the embedded profile without one)")
    config = load_config(settings.config_path, settings.env)
    for model in config.models:
        if not model.upstreams:
            raise ConfigError(
                f"{settings.config_path}: models[{model.name}].upstreams: no upstream URL; "
                "`tram serve` only forwards (use `tram up` to launch the engine, or add upstreams)"
            )
    if not settings.master_key:
        raise ConfigError("no master key: set TRAM_MASTER_KEY (or LITELLM_MASTER_KEY) in the "
                          "environment or in .env")
    return settings, config


async def _migrate(settings: Settings, config: TramConfig) -> None:
    from tram.store.db import Database, database_url
    from tram.store.migrate import migrate_out_of_process

    database = Database(database_url(settings.database_url or config.database.url,
                                     settings.data_dir))
    try:
        await migrate_out_of_process(database)
    finally:
        await database.aclose()


def app_factory() -> object:
    """uvicorn's factory for `--workers N`: each worker builds its own app from the env."""
    from tram.app import create_app

    setup_logging(os.environ.get("TRAM_LOG_LEVEL", "info"))  # a worker: TRAM_LOG_FORMAT too
    path = os.environ.get("TRAM_CONFIG")
    settings, config = load_for_serve(Path(path) if path else None)
    return create_app(settings, config, settle_heap=True)


def _serve(args: argparse.Namespace) -> int:
    try:
        settings, config = load_for_serve(args.config)
    except ConfigError as exc:
        return _fail(str(exc))
    host = args.host or config.server.host
    port = args.port or config.server.port
    workers = args.workers or config.server.workers
    setup_logging(args.log_level, args.log_format)
    # Migrate once here, before any worker starts (workers would race on a fresh database).
    asyncio.run(_migrate(settings, config))
    from tram.server import gateway_config

    if workers > 1:
        assert settings.config_path is not None
        os.environ["TRAM_CONFIG"] = str(settings.config_path.resolve())
        os.environ["TRAM_LOG_LEVEL"] = args.log_level
        os.environ["TRAM_LOG_FORMAT"] = resolve_format(args.log_format)
        # What uvicorn.run does for workers, with the gateway's Config: each worker builds its
        # app from the environment, and its connections take that app's guard.
        from uvicorn.supervisors import Multiprocess

        gateway = gateway_config("tram.cli:app_factory", config.server, factory=True,
                                 workers=workers, host=host, port=port)
        Multiprocess(gateway, sockets=[gateway.bind_socket()]).run()
    else:
        from tram.app import create_app

        app = create_app(settings, config, settle_heap=True)
        gateway = gateway_config(app, config.server, guard=app.connection_guard, host=host,
                                 port=port)
        server = _graceful_server_class()(gateway)
        server.run()
    return 0


def _graceful_server_class() -> type:
    import uvicorn

    class GracefulServer(uvicorn.Server):
        """uvicorn, but a SIGTERM/SIGINT that ends in a clean shutdown exits with status 0
        (uvicorn re-raises the signal after shutting down, so the process died of it)."""

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True
            else:
                self.should_exit = True

    return GracefulServer


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tram", description="Trạm: a self-hosted, OpenAI-compatible LLM API.")
    parser.add_argument("--version", action="version", version=f"tram {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    serve = verbs.add_parser("serve", help="run the gateway only (engines already running)",
                             description="Run the gateway in front of the upstreams in tram.yaml.")
    serve.add_argument("--config", type=Path, help="tram.yaml (default: $TRAM_CONFIG or ./tram.yaml)")
    serve.add_argument("--host", help="listen address (default: server.host, 0.0.0.0)")
    serve.add_argument("--port", type=int, help="listen port (default: server.port, 4000)")
    serve.add_argument("--workers", type=int, help="worker processes (default: server.workers, 1)")
    serve.add_argument("--log-level", default="info", help="debug, info, warning, error")
    serve.add_argument("--log-format", choices=["text", "json"],
                       help="one readable line per event, or JSON lines (default: text at a "
                            "terminal, else json; or TRAM_LOG_FORMAT)")
    serve.set_defaults(run=_serve)

    from tram.batches.cli import add_batches_parser
    from tram.clients.cli import add_clients_parser
    from tram.engines.cli import add_up_parser
    from tram.keys.cli import add_keys_parser
    from tram.store.cli import add_usage_parser

    add_up_parser(verbs)
    add_keys_parser(verbs)
    add_usage_parser(verbs)
    add_batches_parser(verbs)
    add_clients_parser(verbs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.run(args)
    return code
