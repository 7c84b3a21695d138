"""Writes gathered over one turn of the event loop and made together at its end.

The usage journal (store/usage/journal.py) and the log handler (logs.py) each wrote one line per
request event with its own system call; under load many requests end in the same turn of the
loop, so their lines go out in one write when the turn is over (`loop.call_soon`). A line
waits at most until then, i.e. microseconds after the answer left. Outside an event loop
(recovery, tools, other threads) a line is written at once, after anything still gathered, so
the order holds; lines gathered under a loop that has gone (a test's earlier loop) are written
before the next one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["PerTurn"]

T = TypeVar("T")


class PerTurn(Generic[T]):
    """`add` items; `write(items)` gets them once per loop turn. `on_turn_end` is what the
    loop calls at the end of the turn (default: `flush`; a caller that must take a lock first
    passes its own, which calls `flush`)."""

    def __init__(self, write: Callable[[list[T]], None],
                 on_turn_end: Callable[[], None] | None = None) -> None:
        self._write = write
        self._on_turn_end = on_turn_end or self.flush
        self._items: list[T] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, item: T) -> None:
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if self._items and loop is not self._loop:
            self.flush()
        self._items.append(item)
        if loop is None:
            self.flush()
        elif len(self._items) == 1:
            self._loop = loop
            loop.call_soon(self._on_turn_end)

    def flush(self) -> None:
        if self._items:
            items, self._items = self._items, []
            self._write(items)
