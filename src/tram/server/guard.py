"""The bounds one gateway process puts on every client, and where their refusals are counted
(`tram_connections_closed_total{reason}`). The connection (connection.py) applies them; the
server's factory (`gateway_config` in __init__.py) hands them to it."""

from __future__ import annotations

from typing import Any

from tram.config import ServerConfig
from tram.metrics import Metrics

__all__ = ["ConnectionGuard"]


class ConnectionGuard:
    """The bounds of one gateway process and where their refusals are counted."""

    def __init__(self, config: ServerConfig, metrics: Metrics | None = None) -> None:
        self.max_head_bytes = config.max_head_bytes
        self.head_timeout = config.head_timeout
        self.body_timeout = config.body_timeout
        self.max_connections = config.max_connections
        self._closed = metrics.connections_closed if metrics is not None else None
        self._children: dict[str, Any] = {}

    def count(self, reason: str) -> None:
        if self._closed is None:
            return
        child = self._children.get(reason)
        if child is None:
            child = self._children[reason] = self._closed.labels(reason)
        child.inc()
