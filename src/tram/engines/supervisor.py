"""The `tram up` supervisor: engines first, then the gateway; on a signal, the reverse.

Engines run in their own process group (a Ctrl-C in the terminal reaches only the supervisor,
which then stops things in order) and get a signal from the kernel if the supervisor itself dies
(PR_SET_PDEATHSIG: their kind's `parent_death_signal`), so no engine outlives it. An engine
that exits is marked unavailable (the gateway answers 503 for its model at once) and restarted
with exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tram.files import private_dir
from tram.kinds import EngineCommand, Listen
from tram.routing.registry import Replica

__all__ = ["EngineStartError", "ManagedEngine", "stop_all"]

logger = logging.getLogger("tram.supervisor")

_PR_SET_PDEATHSIG = 1


def _die_with_parent(sig: int) -> Callable[[], None]:
    def arm() -> None:  # runs in the child between fork and exec
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, sig)
    return arm


class EngineStartError(Exception):
    """An engine exited or did not become healthy in time; the message says which and why."""


@dataclass(eq=False)
class ManagedEngine:
    name: str
    kind: str
    command: EngineCommand
    listen: Listen
    replica: Replica
    log_path: Path
    startup_timeout: float = 600.0
    grace: float = 10.0
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    stopping: bool = False
    _watcher: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        """Where the engine listens, for people: unix:/path or http://127.0.0.1:port."""
        return str(self.listen)

    async def spawn(self) -> None:
        private_dir(self.log_path.parent)
        if self.listen.socket is not None:
            # A socket file left by an engine that died: binding its path again would fail.
            self.listen.socket.unlink(missing_ok=True)
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.command.argv,
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
                env={**os.environ, **self.command.env},
                start_new_session=True,
                preexec_fn=(_die_with_parent(self.command.parent_death_signal)
                            if sys.platform == "linux" else None),
            )

    async def wait_ready(self, progress: Callable[[str], None] | None = None) -> None:
        """Poll the engine's health endpoint until 200, the process exits, or time runs out."""
        assert self.process is not None
        started = time.monotonic()
        last_report = 0.0
        socket = str(self.listen.socket) if self.listen.socket else None
        transport = httpx.AsyncHTTPTransport(uds=socket)
        root = self.listen.url.removesuffix("/v1")
        async with httpx.AsyncClient(timeout=2.0, trust_env=False, transport=transport) as client:
            while True:
                if self.process.returncode is not None:
                    raise EngineStartError(
                        f"engine for {self.name} ({self.kind}) exited with code "
                        f"{self.process.returncode} while starting; last log lines:\n"
                        f"{self.log_tail()}\n(full log: {self.log_path})")
                with contextlib.suppress(httpx.HTTPError):
                    response = await client.get(root + self.command.health_path)
                    if response.status_code == 200:
                        return
                elapsed = time.monotonic() - started
                if elapsed > self.startup_timeout:
                    raise EngineStartError(
                        f"engine for {self.name} ({self.kind}) did not become healthy within "
                        f"{self.startup_timeout:g}s; see {self.log_path}")
                if progress is not None and elapsed - last_report >= 2:
                    last_report = elapsed
                    progress(f"waiting for {self.name} ({self.kind}) … {elapsed:.0f}s")
                await asyncio.sleep(0.1)

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join("  " + line for line in text.splitlines()[-lines:])

    def watch(self) -> None:
        """Restart the engine whenever it exits, until `stop` is called."""
        self._watcher = asyncio.create_task(self._watch(), name=f"watch-{self.name}")

    async def _watch(self) -> None:
        backoff = 1.0
        while not self.stopping:
            assert self.process is not None
            code = await self.process.wait()
            if self.stopping:
                return
            self.replica.available = False
            logger.error("engine for %s exited with code %s; restarting in %.0fs",
                         self.name, code, backoff)
            await asyncio.sleep(backoff)
            if self.stopping:
                return
            try:
                await self.spawn()
                await self.wait_ready()
            except (EngineStartError, OSError) as exc:
                logger.error("restart of the engine for %s failed: %s", self.name, exc)
                backoff = min(backoff * 2, 60.0)
                continue
            self.restarts += 1
            self.replica.available = True
            backoff = 1.0
            logger.info("engine for %s is back (restart %d)", self.name, self.restarts)

    async def stop(self) -> None:
        """SIGTERM to the engine's process group, SIGKILL after the grace period."""
        self.stopping = True
        self.replica.available = False
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        process = self.process
        if process is None or process.returncode is not None:
            return
        _signal_group(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), self.grace)
        except TimeoutError:
            logger.warning("engine for %s ignored SIGTERM for %.0fs; killing it", self.name,
                           self.grace)
            _signal_group(process.pid, signal.SIGKILL)
            await process.wait()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def stop_all(engines: list[ManagedEngine]) -> None:
    await asyncio.gather(*(engine.stop() for engine in engines))
