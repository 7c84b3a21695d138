"""DISCRETE-EVENT FLEET: the fleet benchmark's engines, gateways and clients in virtual time.

bench/fleet.py runs `tram serve` in front of bench/fleet_sim.py over HTTP, in (sped-up) real
time, on a shared 2-core machine: faithful to the real gateway but noisy and slow. This runs
the same engine model (bench/engine_model.py), the gateway's own routing objects (the real
`ModelPool`, `Replica` and policies of tram.routing, their in-flight counts held and released
as the relay does, engine loads scraped from the engines' `/metrics` text every
`scrape_interval` as routing/engine_load.py does) and the same client sessions
(bench/workloads.py) in one process with a virtual clock: no noise, seconds per run, and every
decision and engine step can be logged.

What it leaves out: network and gateway CPU time (zero here), retries and health (no faults),
the gateway's HTTP layer. Several gateways are several ModelPools that share nothing, each
turn of a session landing on one at random (as `--workers N` spreads connections).

A gateway can hold requests before routing them (an `Admission`, bench/fairqueue.py): the
place for a gateway-side fair queue.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.engine_model import EngineConfig, EngineModel, SimRequest
from bench.fairqueue import Admission, Ticket, Verdict
from bench.fleet_sim import render
from bench.workloads import Flow, Messages, answer_text, session
from tram.config import ModelConfig, QueueConfig, RoutingConfig, UpstreamConfig
from tram.meter import prompt_estimate
from tram.routing.engine_load import parse_metrics, penalty
from tram.routing.policies import LeastOutstanding, RoutingHints
from tram.routing.prefix import CacheAware, prefix_key
from tram.routing.registry import ModelPool, Replica

__all__ = ["PROMPT_RATE", "Fleet", "Loop", "Turn", "breakdown", "percentile", "summary"]

# The gateway's default estimate of an engine's prompt tokens a second (the pacing's).
PROMPT_RATE = QueueConfig().prompt_tokens_per_second

# Builds a gateway's admission queue around its `capacity()`.
AdmissionFactory = Callable[[Callable[[], float]], Admission]


class Loop:
    """A virtual clock (ms) and its events, in time order (ties in the order scheduled)."""

    def __init__(self) -> None:
        self.now = 0.0
        self._events: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()

    def at(self, when: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._events, (max(when, self.now), next(self._seq), action))

    def run(self, until: float = float("inf")) -> None:
        while self._events and self._events[0][0] <= until:
            self.now, _, action = heapq.heappop(self._events)
            action()


@dataclass(eq=False)
class Turn:
    """One request of a session, from the gateway's arrival to its last token."""

    flow: Flow
    messages: Messages
    started: float  # ms, when it reached the gateway
    gateway: int
    counted: bool  # started inside the measured window
    first: float | None = None  # ms, first token
    finished: float | None = None
    replica: int = -1
    request: SimRequest | None = None
    on_done: Callable[[Turn], None] | None = None
    on_first: Callable[[Turn], None] | None = None
    ticket: Ticket | None = None
    rejected: bool = False
    # Where its time to first token went: left the gateway's queue (sent to an engine), the
    # engine began the step that computes its prompt, that step's ms and prompts computed in
    # it (its own included) and requests in it (the first admission, if preempted later).
    dispatched: float | None = None
    admitted: float | None = None
    step_ms: float = 0.0
    step_prefills: int = 0
    step_size: int = 0


class Engine:
    """An EngineModel stepped in virtual time; each step may be recorded (`trace`)."""

    def __init__(self, loop: Loop, config: EngineConfig, index: int,
                 trace: list[tuple[Any, ...]] | None) -> None:
        self.loop, self.index, self.trace = loop, index, trace
        self.model = EngineModel(config)
        self.url = f"http://sim-{index}:8000/v1"
        self._turns: dict[int, Turn] = {}
        self.busy = False
        self.busy_ms = 0.0
        self._began = (0.0, 0)

    def submit(self, turn: Turn) -> None:
        text = render(turn.messages)
        turn.request = self.model.submit(text, turn.flow.max_tokens, turn.flow.priority)
        self._turns[id(turn.request)] = turn
        if not self.busy:
            self.busy = True
            self.loop.at(self.loop.now, self._step)

    def _step(self) -> None:
        if self.model.idle():
            self.busy = False
            return
        self._began = (self.loop.now, len(self.model.waiting))
        duration = self.model.begin_step()
        self.busy_ms += duration
        fresh = [turn for request in self.model.stepping
                 if (turn := self._turns[id(request)]).admitted is None]
        prefills = self.model.admitted
        for turn in fresh:
            turn.admitted, turn.step_ms = self.loop.now, duration
            turn.step_prefills, turn.step_size = prefills, len(self.model.stepping)
        self.loop.at(self.loop.now + duration, self._end)

    def _end(self) -> None:
        now = self.loop.now
        first = finished = 0
        for request in self.model.end_step():
            turn = self._turns[id(request)]
            if turn.first is None:
                turn.first = now
                first += 1
                if turn.on_first is not None:
                    turn.on_first(turn)
            if request.done:
                del self._turns[id(request)]
                turn.finished = now
                finished += 1
                if turn.on_done is not None:
                    turn.on_done(turn)
        if self.trace is not None:  # when, replica, waiting at its start, running, ms,
            began, waiting = self._began  # first tokens, finished requests
            self.trace.append(("step", round(began, 3), self.index, waiting,
                               len(self.model.running), round(now - began, 3), first,
                               finished))
        self._step()


class Gateway:
    """One gateway process: the real ModelPool and policy over its own Replica objects (its
    own in-flight counts), engine loads scraped every `scrape_interval` ms."""

    def __init__(self, loop: Loop, engines: Sequence[Engine], routing: RoutingConfig,
                 speed: float, index: int, admission: AdmissionFactory | None,
                 decisions: list[tuple[Any, ...]] | None, phase: float) -> None:
        self.loop, self.engines, self.index = loop, engines, index
        config = ModelConfig(name="sim", routing=routing, upstreams=[
            UpstreamConfig(url=e.url, served_name="sim") for e in engines])
        self.pool = ModelPool(config, [Replica(url=e.url, served_name="sim") for e in engines])
        if isinstance(self.pool.policy, LeastOutstanding):  # its ties: the same every run
            self.pool.policy = LeastOutstanding(random.Random(index))
        elif isinstance(self.pool.policy, CacheAware):  # its clock: the gateway's seconds
            with contextlib.suppress(TypeError):  # unless a version of it that reads no clock
                self.pool.policy = CacheAware(routing, clock=lambda: loop.now / 1000 / speed)
        self.routing = routing
        self.max_in_flight: int | None = None
        self.replica_cap = float("inf")
        # Requests sent to a replica that have no first token yet (their prompt ahead), and
        # the most a replica may have: one prompt at a time keeps each step short.
        self.prefilling = [0] * len(engines)
        self.prefill_cap = float("inf")
        self.avoid_prompting = False  # prefer replicas with no prompt in flight
        self.prompt_rate = PROMPT_RATE  # tokens/s: sharing.queue.prompt_tokens_per_second
        self._prompt_timer = float("inf")
        self.admission = admission(self.capacity) if admission is not None else None
        self.decisions = decisions
        self._scrape_interval = routing.scrape_interval * 1000 * speed
        self.alive: Callable[[], bool] = lambda: True  # scrape while the run lasts
        if routing.policy in ("auto", "cache_aware") and routing.scrape_metrics:
            loop.at(phase, self._scrape)

    def _scrape(self) -> None:
        for engine, replica in zip(self.engines, self.pool.replicas, strict=True):
            load = parse_metrics(engine.model.metrics("sim"))
            if load is not None:
                replica.engine_penalty = penalty(load, self.routing)
                replica.update_load()
        self._admit_ready()
        if self.alive():
            self.loop.at(self.loop.now + self._scrape_interval, self._scrape)

    def arrive(self, turn: Turn) -> None:
        if self.admission is None:
            self._dispatch(turn)
            return
        flow = turn.flow
        # As the gateway does (relay/queueing.py): the prompt's estimated tokens over the
        # engines' prompt speed, in this clock's ms.
        tokens = prompt_estimate({"messages": turn.messages})
        turn.ticket = Ticket(flow.key, flow.weight, flow.cls, turn,
                             cost=flow.max_tokens + len(render(turn.messages)) / 4 / 12,
                             prompt_seconds=tokens / self.prompt_rate * 1000)
        verdict = self.admission.offer(turn.ticket, self.loop.now)
        if verdict is Verdict.START:
            self._dispatch(turn)
        elif verdict is Verdict.REJECTED:
            self._refuse(turn)
        else:
            deadline = self.admission.next_deadline()
            if deadline is not None:
                self.loop.at(deadline, self._expire)
            self._arm_prompt_end()

    def _arm_prompt_end(self) -> None:
        """Wake when a paced class may start again (the gate's timer)."""
        end = (self.admission.next_prompt_end(self.loop.now) if self.admission is not None
               else None)
        if end is not None and end < self._prompt_timer:
            self._prompt_timer = end
            self.loop.at(end, self._prompt_end)

    def _prompt_end(self) -> None:
        if self.loop.now >= self._prompt_timer:
            self._prompt_timer = float("inf")
        self._admit_ready()

    def capacity(self) -> float:
        """How many requests the engines can take at once: `replica_cap` each, less the
        queue each engine reports (everyone's overflow), within `max_in_flight`."""
        room = sum(max(0.0, self.replica_cap - r.engine_penalty) for r in self.pool.replicas)
        if self.prefill_cap != float("inf"):  # what is in flight, and one start a free replica
            room = min(room, self.pool.in_flight + sum(
                max(0.0, min(self.prefill_cap - prefilling, self.replica_cap - r.outstanding))
                for r, prefilling in zip(self.pool.replicas, self.prefilling, strict=True)))
        return min(room, self.max_in_flight if self.max_in_flight is not None else room)

    def _admit_ready(self) -> None:
        if self.admission is not None:
            for ticket in self.admission.ready(self.loop.now):
                self._dispatch(ticket.item)
            self._arm_prompt_end()

    def _expire(self) -> None:
        if self.admission is not None:
            for ticket in self.admission.expired(self.loop.now):
                self._refuse(ticket.item)

    def _refuse(self, turn: Turn) -> None:
        """A 429: the client's session ends here."""
        turn.rejected = True
        turn.finished = self.loop.now

    def _dispatch(self, turn: Turn) -> None:
        hints = RoutingHints()
        if self.routing.policy in ("auto", "cache_aware"):
            hints = RoutingHints(prefix=prefix_key(turn.messages, self.routing.block_chars,
                                                   self.routing.max_blocks,
                                                   anchor_chars=self.routing.anchor_chars))
        # Replicas at their cap take nothing while another has room: the queue's
        # `capacity()` and the choice of a replica must read the same caps, or the queue
        # leaks its backlog into the engines' own FIFO queues.
        full = [r for r, prefilling in zip(self.pool.replicas, self.prefilling, strict=True)
                if r.routing_load >= self.replica_cap or prefilling >= self.prefill_cap]
        if self.avoid_prompting:  # a replica mid-prompt makes a new arrival wait out its step
            prompting = [r for r, prefilling in zip(self.pool.replicas, self.prefilling,
                                                    strict=True) if prefilling and r not in full]
            if len(full) + len(prompting) < len(self.engines):
                full += prompting
        replica = self.pool.pick(hints, exclude=full if len(full) < len(self.engines) else ())
        assert replica is not None
        index = self.pool.replicas.index(replica)
        if self.decisions is not None:
            self.decisions.append((
                "decision", round(self.loop.now, 3), self.index, index,
                getattr(self.pool.policy, "last_reason", ""),
                [r.outstanding for r in self.pool.replicas],
                [round(r.engine_penalty, 2) for r in self.pool.replicas],
                [len(e.model.waiting) for e in self.engines],
                [len(e.model.running) for e in self.engines]))
        self.pool.hold(replica)
        turn.replica = index
        done = turn.on_done

        def finished(t: Turn, replica: Replica = replica) -> None:
            self.pool.release(replica)
            if self.admission is not None and t.ticket is not None:
                self.admission.done(t.ticket, self.loop.now)
                self._admit_ready()
            if done is not None:
                done(t)

        def first(t: Turn, index: int = index) -> None:
            self.prefilling[index] -= 1
            self._admit_ready()

        self.prefilling[index] += 1
        turn.on_done, turn.on_first = finished, first
        turn.dispatched = self.loop.now
        self.engines[index].submit(turn)


@dataclass
class Fleet:
    """Engines, gateways and client flows in one virtual clock."""

    replicas: int = 4
    policy: str = "cache_aware"
    gateways: int = 1
    engine: EngineConfig = field(default_factory=EngineConfig)
    routing: dict[str, Any] = field(default_factory=dict)  # RoutingConfig fields
    # Simulated seconds per gateway second, as bench/fleet.py's --speed: the gateway's own
    # times (scrape_interval, the recent-sends time constant) are in its seconds.
    speed: float = 0.5
    admission: AdmissionFactory | None = None  # one queue per gateway
    max_in_flight: int | None = None  # per gateway, for `capacity()`
    replica_cap: float = float("inf")  # requests per replica, for `capacity()` and routing
    prefill_cap: float = float("inf")  # requests without a first token per replica
    avoid_prompting: bool = False  # route away from replicas with a prompt in flight
    prompt_rate: float = PROMPT_RATE  # the gateways' estimate of an engine's prompt tokens/s
    seed: int = 3
    trace: bool = False

    def run(self, flows: Sequence[Flow], seconds: float, warmup: float,
            drain: float = float("inf")) -> list[Turn]:
        """Poisson sessions of every flow for warmup + seconds (simulated), then drained for
        at most `drain` seconds; every turn, with `counted` set for those that started in
        the window (`stopped`: when the simulation ended)."""
        loop = Loop()
        self.steps: list[tuple[Any, ...]] = []
        self.decisions: list[tuple[Any, ...]] = []
        steps = self.steps if self.trace else None
        decisions = self.decisions if self.trace else None
        self.engines = [Engine(loop, self.engine, i, steps) for i in range(self.replicas)]
        routing = RoutingConfig(policy=self.policy, **self.routing)  # type: ignore[arg-type]
        rng = random.Random(self.seed)
        self.gateway_list = [
            Gateway(loop, self.engines, routing, self.speed, g,
                    self.admission, decisions,
                    rng.uniform(0, routing.scrape_interval * 1000 * self.speed))
            for g in range(self.gateways)]
        for gateway in self.gateway_list:
            gateway.max_in_flight, gateway.replica_cap = self.max_in_flight, self.replica_cap
            gateway.prefill_cap, gateway.avoid_prompting = self.prefill_cap, self.avoid_prompting
            gateway.prompt_rate = self.prompt_rate
            gateway.alive = lambda: loop.now < end or any(e.busy for e in self.engines) \
                or any(g.admission is not None and g.admission.next_deadline() is not None
                       for g in self.gateway_list)
        turns: list[Turn] = []
        window = warmup * 1000
        end = (warmup + seconds) * 1000
        for flow in flows:
            arrivals = random.Random(flow.seed)  # the same arrivals for every policy
            when, number = 0.0, 0
            while when < end:
                number += 1
                loop.at(when, self._starter(loop, flow, number, turns, rng, window))
                when += arrivals.expovariate(flow.rate) * 1000
        loop.run(end + drain * 1000)
        self.window = (window, end)
        self.stopped = loop.now
        return turns

    def _starter(self, loop: Loop, flow: Flow, number: int, turns: list[Turn],
                 rng: random.Random, window: float) -> Callable[[], None]:
        def start() -> None:
            steps = session(flow.workload, flow.seed, number)

            def next_turn(answer: str | None) -> None:
                try:
                    messages = steps.send(answer)  # type: ignore[arg-type]
                except StopIteration:
                    return
                gateway = rng.randrange(self.gateways)
                turn = Turn(flow, messages, loop.now, gateway, loop.now >= window,
                            on_done=lambda t: next_turn(answer_text(t.flow.max_tokens)))
                turns.append(turn)
                self.gateway_list[gateway].arrive(turn)

            next_turn(None)

        return start


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def summary(turns: Sequence[Turn], window: tuple[float, float], key: str | None = None,
            stopped: float | None = None) -> dict[str, float]:
    """p50/p90/p99 time to first token (ms) of the counted turns, output tokens per second
    of those finished inside the window, and how many there were. A turn still without its
    first token when the simulation `stopped` counts as waiting until then (a lower bound;
    `censored` says how many); one refused by the gateway counts for nothing."""
    mine = [t for t in turns if t.counted and (key is None or t.flow.key == key)
            and not t.rejected]
    ttft = [t.first - t.started for t in mine if t.first is not None]
    censored = [t for t in mine if t.first is None]
    if stopped is not None:
        ttft += [stopped - t.started for t in censored]
    seconds = (window[1] - window[0]) / 1000
    done = [t for t in mine if t.finished is not None and t.finished <= window[1]]
    return {"p50": percentile(ttft, .5), "p90": percentile(ttft, .9),
            "p99": percentile(ttft, .99), "turns": len(mine), "censored": len(censored),
            "tok_s": sum(t.flow.max_tokens for t in done) / seconds}


def breakdown(turns: Sequence[Turn], window: tuple[float, float], key: str,
              share: float = 0.9) -> dict[str, float]:
    """Where a key's time to first token went, over its counted turns that got one, and
    over its tail (TTFT at or above the `share` percentile): means of the wait in the
    gateway's queue, of the wait at the engine (the step running when it arrived, then any
    queue there), of the step that computed its prompt; that step's prompts and requests."""
    mine = [t for t in turns if t.counted and t.flow.key == key and not t.rejected
            and t.first is not None and t.dispatched is not None and t.admitted is not None]
    cut = percentile([t.first - t.started for t in mine], share)  # type: ignore[operator]
    out: dict[str, float] = {}
    for name, group in (("all", mine), ("tail", [t for t in mine  # type: ignore[operator]
                                                  if t.first - t.started >= cut])):
        n = max(len(group), 1)
        out[f"{name}_gateway"] = sum(t.dispatched - t.started for t in group) / n  # type: ignore[operator]
        out[f"{name}_engine"] = sum(t.admitted - t.dispatched for t in group) / n  # type: ignore[operator]
        out[f"{name}_step"] = sum(t.step_ms for t in group) / n
        out[f"{name}_prefills"] = sum(t.step_prefills for t in group) / n
        out[f"{name}_size"] = sum(t.step_size for t in group) / n
    return out
