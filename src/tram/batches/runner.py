"""The batch runner: one per gateway process, started in the app's lifespan. It takes lines from
the database (store/batch_lines.py: claimed with a lease, renewed while they run), as many per
model as its `Throttle` allows, runs each as a request of the batch's key (execute.py), and
stores each result with the line's final state in one statement; when a batch has no line left
pending or running, it writes the batch's files and final status (store/batches.py).

What that guarantees, precisely: every line ends with exactly one result, in the output or the
error file. A line whose result is stored is never run again. A line that was running in a
process that died (kill -9, a lost host) is run again by whichever process claims it once its
lease has run out (`batches.lease_seconds`): the engine may have worked on it twice, and each
run is a usage row of the key (the dead process's one is recorded as `gateway_interrupted` by
the next start on its host), but only one result is kept. A process stopped cleanly lets its
lines finish for `shutdown_grace` seconds and hands back the rest at once. A line interrupted
`MAX_ATTEMPTS` times is not tried again: it fails with `batch_request_interrupted`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import secrets
import socket
import time

from sqlalchemy.exc import SQLAlchemyError

from tram.batches.execute import LineExecutor, Retry
from tram.batches.shapes import error_line, unrun_line
from tram.batches.throttle import LoadSignal, Throttle
from tram.config import BatchesConfig
from tram.store.batch_lines import ClaimedLine, LineQueue, Outcome
from tram.store.batches import BatchStore

__all__ = ["MAX_ATTEMPTS", "BatchRunner"]

logger = logging.getLogger("tram.batches")

MAX_ATTEMPTS = 3
_DATABASE_ERRORS = (SQLAlchemyError, OSError)


class BatchRunner:
    def __init__(self, lines: LineQueue, batches: BatchStore, executor: LineExecutor,
                 signal: LoadSignal, config: BatchesConfig, worker: str | None = None,
                 running: dict[str, int] | None = None) -> None:
        self._lines = lines
        self._batches = batches
        self._executor = executor
        self._signal = signal
        self._config = config
        # Names this process's claims: host, pid and a random part (a pid is reused).
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._throttles: dict[str, Throttle] = {}
        self._running = running if running is not None else {}  # lines in flight by model
        self._tasks: dict[int, asyncio.Task[None]] = {}  # line id → its task
        self._owners: dict[str, str] = {}  # batch id → the key that made it
        self._per_key: dict[str, int] = {}  # lines in flight here by key
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._swept = 0.0
        self._survey = True  # list the models with work at the next step
        self._models: set[str] = set()  # models with lines to claim, as last seen

    def running(self, model: str) -> int:
        """This process's lines of the model in flight (what GatewayLoad subtracts)."""
        return self._running.get(model, 0)

    def limit(self, model: str) -> int | None:
        throttle = self._throttles.get(model)
        return throttle.limit if throttle is not None else None

    def wake(self, news: bool = True) -> None:
        """Look for work now, not at the next poll; `news`: a batch was made or cancelled
        (list the models with work again)."""
        self._survey = self._survey or news
        if self._wake is not None:
            self._wake.set()

    async def run(self) -> None:
        """Until `stop` (or cancelled): take lines and run them."""
        self._wake = asyncio.Event()
        renewer = asyncio.ensure_future(self._renew_forever())
        try:
            while not self._stopping:
                try:
                    busy = await self._step()
                except Exception:  # a bug must not take the gateway down with the runner
                    logger.exception("batches: the runner failed unexpectedly; going on")
                    busy = False
                self._wake.clear()
                pause = self._config.adjust_interval if busy else self._config.poll_interval
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), pause)
        finally:
            renewer.cancel()

    async def _step(self) -> bool:
        """One look for work; whether there is some (in flight or waiting)."""
        try:
            if self._survey or time.monotonic() - self._swept >= self._config.poll_interval:
                await self._sweep()
            now = time.time()
            self._signal.watch(self._models | {m for m, n in self._running.items() if n})
            for model in sorted(self._models):
                if self._stopping:
                    break
                throttle = self._throttles.get(model)
                if throttle is None:
                    throttle = self._throttles[model] = Throttle(
                        self._config.min_concurrency, self._config.max_concurrency,
                        self._config.adjust_interval)
                room = throttle.room(self._signal.load(model), self.running(model))
                if room > 0:
                    claimed = await self._lines.claim(self.worker, model, room, now,
                                                      self._config.lease_seconds)
                    if len(claimed) < room:
                        self._models.discard(model)  # none left for now: until the next sweep
                    if self._stopping and claimed:  # claimed as the process began to stop
                        await self._lines.release(self.worker, [line.id for line in claimed])
                        break
                    for line in claimed:
                        self._start(line)
        except _DATABASE_ERRORS as exc:
            logger.warning("batches: the database is unavailable (%s); retrying",
                           type(exc).__name__)
        return bool(self._models) or bool(self._tasks)

    async def _sweep(self) -> None:
        """Every `poll_interval` (and when woken with news): overdue batches expire, lines of
        gone processes go back to pending (or end, in a cancelling batch), done batches are
        finished, and the models with lines to run are listed (a scan of the pending lines:
        not done on every claim)."""
        self._survey = False
        self._swept = time.monotonic()
        # The usual sweep of an idle gateway: one read, not two writes and two scans.
        if not await self._batches.any_active():
            self._models = set()
        else:
            await self._batches.expire(dt.datetime.now(dt.UTC))
            reclaimed = await self._lines.reclaim(time.time())
            if reclaimed:
                logger.warning("batches: %d lines whose lease ran out are run again", reclaimed)
            await self._batches.cancel_given_back(dt.datetime.now(dt.UTC))
            for batch_id in await self._batches.finishable():
                await self._finish(batch_id)
            self._models = await self._lines.models(time.time())
        # What is kept per model, key and batch is for work in hand only.
        for model in [m for m in self._throttles if m not in self._models
                      and not self._running.get(m)]:
            del self._throttles[model]
            self._running.pop(model, None)
        if len(self._owners) > 10_000:
            self._owners.clear()

    def _start(self, line: ClaimedLine) -> None:
        self._running[line.model] = self._running.get(line.model, 0) + 1
        task = asyncio.ensure_future(self._line(line))
        self._tasks[line.id] = task

    async def _line(self, line: ClaimedLine) -> None:
        try:
            outcome = await self._outcome(line)
            if isinstance(outcome, Retry):
                await self._lines.release(self.worker, [line.id],
                                          time.time() + outcome.after)
            else:
                await self._commit(line, outcome)
        except _DATABASE_ERRORS as exc:
            logger.warning("batches: line %d of %s left to its lease (%s)", line.line,
                           line.batch_id, type(exc).__name__)
        except Exception:
            logger.exception("batches: line %d of %s failed unexpectedly", line.line,
                             line.batch_id)
        finally:
            self._running[line.model] -= 1
            self._tasks.pop(line.id, None)
            # Lines are claimed a few at a time: a step (a claim) once a quarter of the
            # model's slots are free, or at the next tick.
            throttle = self._throttles.get(line.model)
            limit = throttle.limit if throttle is not None else 1
            if limit - self._running[line.model] >= max(1, limit // 4):
                self.wake(news=False)

    async def _outcome(self, line: ClaimedLine) -> Outcome | Retry:
        if line.attempts > MAX_ATTEMPTS:
            return Outcome("failed", error_line(
                line.custom_id, "batch_request_interrupted",
                f"This request was interrupted {line.attempts - 1} times (the gateway running "
                "it stopped) and is not tried again."))
        owner = self._owners.get(line.batch_id)
        if owner is None:
            owner = await self._lines.owner(line.batch_id) or ""
            self._owners[line.batch_id] = owner
        self._per_key[owner] = self._per_key.get(owner, 0) + 1
        try:
            return await self._executor.run(line, owner, self._per_key[owner] - 1)
        finally:
            self._per_key[owner] -= 1
            if not self._per_key[owner]:
                del self._per_key[owner]

    async def _commit(self, line: ClaimedLine, outcome: Outcome) -> None:
        """Store the result; while the database is down, keep trying (the lease is renewed
        meanwhile, if it can be; if another process took the line over, its result stands)."""
        delay = 0.5
        while True:
            try:
                more = await self._lines.finish(line.id, self.worker, outcome)
                break
            except _DATABASE_ERRORS as exc:
                logger.warning("batches: storing line %d of %s failed (%s); retrying",
                               line.line, line.batch_id, type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        if more is None:
            logger.warning("batches: line %d of %s was taken over after its lease ran out; "
                           "this process's result is dropped", line.line, line.batch_id)
        elif not more:
            await self._finish(line.batch_id)

    async def _finish(self, batch_id: str) -> None:
        status = await self._batches.finish(batch_id, unrun_line)
        if status is not None:
            self._owners.pop(batch_id, None)
            logger.info("batches: %s %s", batch_id, status)

    async def _renew_forever(self) -> None:
        lease = self._config.lease_seconds
        while True:
            await asyncio.sleep(lease / 3)
            if not self._tasks:
                continue
            try:
                await self._lines.renew(self.worker, time.time(), lease)
            except _DATABASE_ERRORS as exc:
                logger.warning("batches: renewing leases failed (%s)", type(exc).__name__)
            except Exception:
                logger.exception("batches: renewing leases failed unexpectedly")

    async def stop(self, grace: float | None = None) -> None:
        """Take no more lines; let those in flight finish for `grace` seconds, then cancel
        them and hand them back, so another process (or the next start) runs them at once."""
        self._stopping = True
        self.wake()
        loop = asyncio.get_running_loop()
        ends = loop.time() + (self._config.shutdown_grace if grace is None else grace)
        while self._tasks and loop.time() < ends:
            await asyncio.wait(list(self._tasks.values()), timeout=ends - loop.time())
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            handed = await self._lines.release(self.worker)
        except _DATABASE_ERRORS:
            handed = 0  # their leases run out instead
        if handed:
            logger.info("batches: %d lines in flight handed back at shutdown", handed)
