"""The bounds one gateway process puts on every client, and where their refusals are counted
(`tram_connections_closed_total{reason}`). The connection (connection.py) applies them; the
server's factory (`gateway_config` in __init__.py) hands them to it."""

from __future__ import annotations

from typing import Any

from tram.config import ServerConfig
from tram.metrics import Metrics

__all__ = ["MAX_PIPELINED", "MAX_PIPELINED_BYTES", "ConnectionGuard"]

# Requests one connection may have parsed and waiting behind the one being answered, and the
# bytes they (and what was read but not parsed yet) may hold; past either, reading from that
# client pauses until answers drain. Not `server:` settings yet (docs/decisions.md,
# "Pipelined requests: bounded per connection").
MAX_PIPELINED = 32
MAX_PIPELINED_BYTES = 256 * 1024


class ConnectionGuard:
    """The bounds of one gateway process and where their refusals are counted."""

    def __init__(self, config: ServerConfig, metrics: Metrics | None = None, *,
                 max_pipelined: int = MAX_PIPELINED,
                 max_pipelined_bytes: int = MAX_PIPELINED_BYTES) -> None:
        self.max_head_bytes = config.max_head_bytes
        self.head_timeout = config.head_timeout
        self.body_timeout = config.body_timeout
        self.max_connections = config.max_connections
        # At least one of each: the connection asks about them only once something is queued.
        self.max_pipelined = max(1, max_pipelined)
        self.max_pipelined_bytes = max(1, max_pipelined_bytes)
        self._closed = metrics.connections_closed if metrics is not None else None
        self._children: dict[str, Any] = {}

    def count(self, reason: str) -> None:
        if self._closed is None:
            return
        child = self._children.get(reason)
        if child is None:
            child = self._children[reason] = self._closed.labels(reason)
        child.inc()
