"""Upload bodies held in memory at once, per process: a multipart upload (up to
`server.max_upload_bytes`) is read whole before it is parsed and forwarded, so without a bound
eight concurrent 24 MiB uploads held ~1 GB. Each upload holds its declared size (else the
route's limit) until it is forwarded; beyond the bound a new upload waits a few seconds for
room, then gets a 503 with Retry-After."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tram.errors import ServerBusy

__all__ = ["UploadBudget"]


class UploadBudget:
    def __init__(self, limit: int, wait: float = 5.0) -> None:
        self.limit = limit
        self._wait = wait
        self._used = 0
        self._room = asyncio.Condition()

    @property
    def used(self) -> int:
        return self._used

    @asynccontextmanager
    async def hold(self, size: int) -> AsyncIterator[None]:
        size = max(min(size, self.limit), 1)
        async with self._room:
            try:
                await asyncio.wait_for(self._room.wait_for(lambda: self._used + size
                                                           <= self.limit), self._wait)
            except TimeoutError:
                raise ServerBusy("Too many uploads are being received at once; retry "
                                 "shortly.") from None
            self._used += size
        try:
            yield
        finally:
            async with self._room:
                self._used -= size
                self._room.notify_all()
