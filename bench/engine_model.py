"""ENGINE MODEL: one simulated vLLM replica's scheduler, with no clock and no I/O.

The fleet simulator (bench/fleet_sim.py, real time over HTTP) and the discrete-event fleet
(bench/fleet_des.py, virtual time, in process) drive the same model: `submit` a request,
`begin_step` (what vLLM's `Scheduler.schedule` decides: which requests run, which are
preempted, which are admitted; returns the step's duration), then `end_step` (one token for
every request that ran; returns them). What it models, after vLLM 0.32's v1 scheduler
(vllm/v1/core/sched/scheduler.py, request_queue.py):

* a prefix cache of 16-token blocks, chained hashes, LRU eviction of blocks no running request
  holds, and a KV capacity in blocks;
* a request holds its prompt's blocks and, as it decodes, one more block each time its
  sequence crosses a block boundary (`allocate_slots`, incremental, no reservation);
* the running requests are scheduled first (`schedule`'s first loop); one that needs a block
  when none is free preempts a victim: the running request with the largest
  (priority, arrival) under `priority`, the last admitted under `fcfs` (`self.running[-1]`);
  the victim frees its blocks (its full prompt blocks stay in the cache, evictable), goes
  back to the waiting queue and is recomputed on resume (prompt + the tokens it already
  produced, less what the cache still holds). A request that must preempt itself stops the
  running loop for this step;
* then, only in a step without preemptions, the waiting queue is admitted while the batch has
  room (`max_num_seqs`) and blocks can be found for the prompt; the first request that does
  not fit stops admission (head-of-line, as vLLM's `break`). The queue is a FIFO under `fcfs`
  (a preempted request goes back to its front) and a heap on (priority, arrival) under
  `priority` (lower value first). A waiting request never preempts a running one: in vLLM
  preemption happens only in the running loop;
* under `fcfs` a request's `priority` is ignored (vLLM 0.32 documents an error for a non-zero
  priority without priority scheduling but does not raise one);
* a step costs `step_base_ms + step_per_seq_ms × running + prefill_ms_per_token × tokens
  computed for prompts` (no chunked prefill: a prompt is computed in one step).

Calibration (docs/decisions.md): Qwen3-8B BF16 on one H100, ~64 ms time to first token and
~500 output tokens/s at 4 concurrent requests.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import math
import zlib
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["CHARS_PER_TOKEN", "EngineConfig", "EngineModel", "SimRequest", "prompt_blocks"]

CHARS_PER_TOKEN = 4
Policy = Literal["fcfs", "priority"]


@dataclass
class EngineConfig:
    block_tokens: int = 16
    kv_capacity_tokens: int = 160_000
    prefill_ms_per_token: float = 0.06
    step_base_ms: float = 6.0
    step_per_seq_ms: float = 0.5
    max_batch: int = 32
    speed: float = 1.0  # real-time simulator only: the clock runs this many times faster
    stream_every: int = 16  # real-time simulator only: tokens per SSE chunk after the first
    scheduling: Policy = "fcfs"  # vLLM's --scheduling-policy


def prompt_blocks(text: str, block_tokens: int) -> list[int]:
    """The chained hashes of a prompt's complete blocks (4 characters a token)."""
    size = block_tokens * CHARS_PER_TOKEN
    blocks, crc = [], 0
    for start in range(0, len(text) - size + 1, size):
        crc = zlib.crc32(text[start:start + size].encode(), crc)
        blocks.append(crc)
    return blocks


_order = itertools.count()


@dataclass(eq=False)
class SimRequest:
    blocks: list[int]
    prompt_tokens: int
    max_tokens: int
    priority: int = 0
    arrival: int = field(default_factory=lambda: next(_order))  # ties: first come first
    generated: int = 0  # tokens produced (and sent) so far
    cached_tokens: int = 0  # prompt tokens found in the cache at the first admission
    owned: int = 0  # blocks held beyond the prompt's full blocks (its tail and its output)
    preemptions: int = 0
    running: bool = False
    cancelled: bool = False
    admitted_once: bool = False

    def __lt__(self, other: SimRequest) -> bool:  # the priority queue's order
        return (self.priority, self.arrival) < (other.priority, other.arrival)

    @property
    def done(self) -> bool:
        return self.generated >= self.max_tokens


class EngineModel:
    """One replica: prefix cache, KV blocks, running batch, waiting queue, metrics."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.cache: collections.OrderedDict[int, None] = collections.OrderedDict()
        self.pinned: collections.Counter[int] = collections.Counter()
        self.running: list[SimRequest] = []
        self._fifo: collections.deque[SimRequest] = collections.deque()
        self._heap: list[SimRequest] = []
        self.queries = 0  # prompt tokens looked up in the cache (vLLM's counters)
        self.hits = 0
        self.preemptions = 0
        self._stepping: list[SimRequest] = []
        self.admitted = 0

    # -- the queue -------------------------------------------------------------------------

    @property
    def waiting(self) -> list[SimRequest]:
        return list(self._fifo) if self.config.scheduling == "fcfs" else sorted(self._heap)

    def _enqueue(self, request: SimRequest, front: bool = False) -> None:
        if self.config.scheduling == "priority":
            heapq.heappush(self._heap, request)
        elif front:
            self._fifo.appendleft(request)
        else:
            self._fifo.append(request)

    def _peek(self) -> SimRequest | None:
        """The head of the waiting queue; cancelled requests are dropped on the way."""
        while True:
            if self.config.scheduling == "priority":
                head = self._heap[0] if self._heap else None
            else:
                head = self._fifo[0] if self._fifo else None
            if head is None or not head.cancelled:
                return head
            self._pop()

    def _pop(self) -> None:
        if self.config.scheduling == "priority":
            heapq.heappop(self._heap)
        else:
            self._fifo.popleft()

    def idle(self) -> bool:
        return not self.running and self._peek() is None

    def submit(self, text: str, max_tokens: int, priority: int = 0) -> SimRequest:
        request = SimRequest(prompt_blocks(text, self.config.block_tokens),
                             math.ceil(len(text) / CHARS_PER_TOKEN), max_tokens, priority)
        self._enqueue(request)
        return request

    # -- KV blocks -------------------------------------------------------------------------

    @property
    def capacity_blocks(self) -> int:
        return self.config.kv_capacity_tokens // self.config.block_tokens

    def used_blocks(self) -> int:
        return len(self.cache) + sum(r.owned for r in self.running)

    def _make_room(self, blocks: int) -> bool:
        """Evict unpinned cached blocks, least recently used first, until `blocks` fit."""
        excess = self.used_blocks() + blocks - self.capacity_blocks
        if excess <= 0:
            return True
        for crc in list(self.cache):
            if excess <= 0:
                break
            if not self.pinned[crc]:
                del self.cache[crc]
                excess -= 1
        return excess <= 0

    def _tail_blocks(self, request: SimRequest) -> int:
        """Blocks the request's sequence needs beyond its prompt's full blocks now: the KV of
        its prompt and of every token it produced but the last (computed next step)."""
        tokens = request.prompt_tokens + max(request.generated, 0)
        return max(0, math.ceil(tokens / self.config.block_tokens) - len(request.blocks))

    def _unpin(self, blocks: list[int]) -> None:
        for crc in blocks:
            self.pinned[crc] -= 1
            if not self.pinned[crc]:
                del self.pinned[crc]

    def _release(self, request: SimRequest) -> None:
        self._unpin(request.blocks)
        request.owned = 0
        request.running = False

    # -- one step --------------------------------------------------------------------------

    def begin_step(self) -> float:
        """Schedule one step: running requests first (preempting when blocks run out), then
        admissions if nothing was preempted. The step's duration in ms."""
        stepping: list[SimRequest] = []
        preempted = False
        index = 0
        while index < len(self.running):
            request = self.running[index]
            more = self._tail_blocks(request) - request.owned
            while more > 0 and not self._make_room(more):
                victim = self._victim()
                self._preempt(victim)
                preempted = True
                if victim in stepping:  # vLLM gives the victim's scheduled tokens back
                    stepping.remove(victim)
                if victim is request:
                    break
            if not request.running:  # it preempted itself: nothing else runs this step
                break
            request.owned += max(more, 0)
            stepping.append(request)
            index = self.running.index(request) + 1
        running = len(stepping)
        prefill = 0 if preempted else self._admit(stepping)
        self.admitted = len(stepping) - running  # prompts computed in this step
        self._stepping = stepping
        config = self.config
        return config.step_base_ms + config.step_per_seq_ms * len(stepping) \
            + prefill * config.prefill_ms_per_token

    def _victim(self) -> SimRequest:
        if self.config.scheduling == "priority":
            return max(self.running, key=lambda r: (r.priority, r.arrival))
        return self.running[-1]

    def _preempt(self, victim: SimRequest) -> None:
        self.running.remove(victim)
        self._release(victim)
        victim.preemptions += 1
        self.preemptions += 1
        self._enqueue(victim, front=True)

    def _admit(self, stepping: list[SimRequest]) -> int:
        """Admit waiting requests while the batch has room; the prompt tokens to compute."""
        prefill = 0
        block = self.config.block_tokens
        while len(self.running) < self.config.max_batch:
            request = self._peek()
            if request is None:
                break
            hit = 0
            for crc in request.blocks:
                if crc not in self.cache:
                    break
                hit += 1
                self.pinned[crc] += 1  # its cached blocks are held first: never evicted for it
            tail = self._tail_blocks(request)
            if not self._make_room(len(request.blocks) - hit + tail):
                self._unpin(request.blocks[:hit])
                break
            self._pop()
            for index, crc in enumerate(request.blocks):
                self.cache[crc] = None
                self.cache.move_to_end(crc)
                if index >= hit:
                    self.pinned[crc] += 1
            request.owned = tail
            request.running = True
            cached = min(hit * block, request.prompt_tokens)
            if not request.admitted_once:
                request.admitted_once = True
                request.cached_tokens = cached
                self.queries += request.prompt_tokens
                self.hits += cached
            # Resumed after a preemption: the prompt and what it produced are recomputed.
            prefill += request.prompt_tokens + request.generated - cached
            self.running.append(request)
            stepping.append(request)
        return prefill

    @property
    def stepping(self) -> list[SimRequest]:
        """The requests the step begun last runs (admitted ones last)."""
        return self._stepping

    def end_step(self) -> list[SimRequest]:
        """The step ran: one token each; finished and cancelled requests leave the batch.
        The requests that produced a token, in batch order."""
        produced = []
        for request in self._stepping:
            if not request.running:
                continue
            if request.cancelled:
                self.running.remove(request)
                self._release(request)
                continue
            request.generated += 1
            produced.append(request)
            if request.done:
                self.running.remove(request)
                self._release(request)
        self._stepping = []
        return produced

    def cancel(self, request: SimRequest) -> None:
        """The client left: a waiting request is dropped, a running one leaves at step end."""
        request.cancelled = True

    def metrics(self, name: str) -> bytes:
        # vLLM's usage counts blocks held by requests: cached blocks no request holds are in
        # its free queue (BlockPool.get_usage), evictable, so they are not "used".
        held = len(self.pinned) + sum(r.owned for r in self.running)
        usage = min(1.0, held / max(self.capacity_blocks, 1))
        label = f'model_name="{name}"'
        waiting = sum(1 for r in self.waiting if not r.cancelled)
        return (f"vllm:num_requests_running{{{label}}} {len(self.running)}\n"
                f"vllm:num_requests_waiting{{{label}}} {waiting}\n"
                f"vllm:kv_cache_usage_perc{{{label}}} {usage:.4f}\n"
                f"vllm:prefix_cache_queries_total{{{label}}} {self.queries}\n"
                f"vllm:prefix_cache_hits_total{{{label}}} {self.hits}\n"
                f"vllm:num_preemptions_total{{{label}}} {self.preemptions}\n").encode()
