"""Sharing a fleet fairly (issue 27): what one key's load does to another key's time to first
token, with FCFS engines, with vLLM's priority scheduling, and with a gateway-side queue.

    python -m bench fairness [--scenario flood|keys|all] [--seconds 15] [--seeds 7,8,9]
                             [--real] [--speed 0.5] [--fair-queue] [--batch-share 0.35]

Scenarios (4 replicas, bench/engine_model.py's vLLM; prompts with nothing to cache, so
routing does not enter into it):

  flood  an interactive key (~1,240-token prompts, 24 tokens out) at 25% of the fleet's
         capacity for them, alone; then beside a batch key (the same prompts, 256 tokens
         out) flooding at twice the fleet's capacity for batch requests: with FCFS engines,
         and with engines under `--scheduling-policy priority` and the batch sent at
         priority 1 (the interactive key at 0). Reported: the interactive key's TTFT, and
         the share of the capacity the interactive key leaves idle that the batch used.
  keys   two interactive keys, one sending 10× the other's traffic, 1.5× the fleet's
         capacity together (past saturation), FCFS: the small key's TTFT against alone.

By default in virtual time (bench/fleet_des.py: seconds, deterministic, seeds averaged).
`--real` runs `tram serve` in front of bench/fleet_sim.py over HTTP instead (sped-up real
time, one virtual key per key created through /admin/keys, priority sent as the request's
`priority` field; its "FCFS" rows are the gateway with its default settings, the queue engaging
on the engines' own queue). With `--fair-queue`, keys also runs the rows the product's gateway
can: its fair queue at `max_in_flight` = the replicas' caps together, without and with
`key_prompts` (`--seconds 30` gives the DES's window and warm-up in simulated time).
`--fair-queue` (virtual time only) adds rows with the product's fair queue
(src/tram/sharing/fairqueue.py through bench/fairqueue.py) in the simulated gateway: each
replica takes at most 32 requests (its batch) unless a row says fewer, the rest wait at the
gateway; in flood, also with the batch class held to `--batch-share` of that capacity
(sharing.queue.class_share), and with batch prompts started one at a time
(sharing.queue.class_prompts, its prompt-speed estimate right and a third off either way, beside
a batch share of 45%); in keys, also with each key's prompts paced while the other key is
present (sharing.queue.key_prompts, 2 and 3 a key, the estimate right, low and high). Each
scenario ends with where the interactive (small) key's
time to first token went: the gateway's queue, the engine, the step computing its prompt.

Capacities are measured first, as the completed requests per second of a flood (4× a guess)
over the window: the fleet's throughput for that request shape.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from bench.engine_model import EngineConfig
from bench.fairqueue import FairQueue
from bench.fleet_des import PROMPT_RATE, Fleet, Turn, breakdown, summary
from bench.workloads import Flow

INTERACTIVE = Flow("unique", 1.0, key="interactive", cls="interactive", max_tokens=24, seed=11)
BATCH = Flow("unique", 1.0, key="batch", cls="batch", max_tokens=256, seed=12)
GUESS = {24: 50.0, 256: 16.0}  # requests per simulated second the fleet completes, roughly
DRAIN = 60.0  # simulated seconds a run goes on after its last arrival, at most
PACED_SHARE = 0.45  # the batch class's share beside paced prompts (bench/RESULTS.md)


@dataclass
class Outcome:
    per_key: dict[str, dict[str, float]]  # summary() of each key
    completed: dict[str, float]  # requests per second finished inside the window
    rejected: int = 0
    where: dict[str, dict[str, float]] | None = None  # breakdown() of each key


@dataclass(frozen=True)
class Queueing:
    """The simulated gateway's queue: "keys" (fair share across keys) or "classes"
    (interactive first, then fair share across keys); each replica's cap (the engine's
    max_num_seqs, 32, unless told); the most of the capacity the batch class may hold."""

    order: str = "keys"
    replica_cap: float = 32
    batch_share: float | None = None
    prefill_cap: float = float("inf")  # requests without a first token, per replica
    avoid_prompting: bool = False  # routed away from replicas with a prompt in flight
    batch_prompts: int | None = None  # sharing.queue.class_prompts["batch"]
    key_prompts: int | None = None  # sharing.queue.key_prompts
    prompt_rate: float = PROMPT_RATE  # sharing.queue.prompt_tokens_per_second

    def label(self) -> str:
        text = ("interactive class first" if self.order == "classes"
                else "fair share by key") + f", {self.replica_cap:g} a replica"
        if self.prefill_cap != float("inf"):
            text += f", {self.prefill_cap:g} prompt(s) at a time a replica"
        if self.avoid_prompting:
            text += ", away from replicas mid-prompt"
        if self.batch_prompts is not None:
            text += (f", {self.batch_prompts} batch prompt(s) at a time (estimated at "
                     f"{self.prompt_rate:,.0f} tokens/s)")
        if self.key_prompts is not None:
            text += (f", {self.key_prompts} prompts at a time a key (estimated at "
                     f"{self.prompt_rate:,.0f} tokens/s)")
        return text + (f", batch ≤ {self.batch_share:.0%}" if self.batch_share else "")


# flows, the engines' scheduling, the gateway's queue (None: none), the seed.
Runner = Callable[[Sequence[Flow], str, Queueing | None, int], Outcome]


def des_runner(seconds: float) -> Runner:
    def run(flows: Sequence[Flow], scheduling: str, fair: Queueing | None,
            seed: int) -> Outcome:
        def queue(capacity: Callable[[], float]) -> FairQueue:
            assert fair is not None
            order = ("interactive", "batch") if fair.order == "classes" else ()
            share = {"batch": fair.batch_share} if fair.batch_share is not None else None
            paced = {"batch": fair.batch_prompts} if fair.batch_prompts is not None else None
            return FairQueue(capacity, max_per_key=100_000, max_queue=100_000,
                             class_order=order, class_share=share, class_prompts=paced,
                             key_prompts=fair.key_prompts)

        fleet = Fleet(engine=EngineConfig(scheduling=scheduling),  # type: ignore[arg-type]
                      seed=seed, replica_cap=fair.replica_cap if fair else float("inf"),
                      prefill_cap=fair.prefill_cap if fair else float("inf"),
                      avoid_prompting=fair.avoid_prompting if fair else False,
                      prompt_rate=fair.prompt_rate if fair else PROMPT_RATE,
                      admission=queue if fair else None)
        flows = [replace(f, seed=f.seed * 100 + seed) for f in flows]
        turns = fleet.run(flows, seconds, seconds / 2, drain=DRAIN)
        return outcome(turns, fleet.window, [f.key for f in flows], fleet.stopped)
    return run


def outcome(turns: Sequence[Turn], window: tuple[float, float], keys: Sequence[str],
            stopped: float) -> Outcome:
    """Each key's TTFT (turns started in the window; still waiting when the run stopped:
    counted as waiting until then), and requests finished per second during the window
    (whenever they started: the fleet's service to that key)."""
    seconds = (window[1] - window[0]) / 1000
    completed = {key: sum(1 for t in turns if t.flow.key == key and t.finished is not None
                          and not t.rejected and window[0] <= t.finished <= window[1])
                 / seconds for key in keys}
    return Outcome({key: summary(turns, window, key, stopped) for key in keys}, completed,
                   sum(1 for t in turns if t.rejected),
                   {key: breakdown(turns, window, key) for key in keys})


def diagnosis(name: str, results: Sequence[Outcome], key: str) -> str:
    """A row of where the key's TTFT went, seeds averaged: all its turns, then its tail."""
    rows = [r.where[key] for r in results if r.where is not None and key in r.where]
    if not rows:
        return f"| {name} | – | – |"
    cell = {f: _mean([row[f] for row in rows]) for f in rows[0]}
    return f"| {name} | " + " | ".join(
        "{:.0f} · {:.0f} · {:.0f} ({:.1f} prompts, {:.0f} requests)".format(
            *(cell[f"{part}_{f}"] for f in ("gateway", "engine", "step", "prefills", "size")))
        for part in ("all", "tail")) + " |"


DIAGNOSIS_HEAD = [
    "", "Where the {key} key's time to first token went (ms, means over its turns, seeds "
    "averaged; tail: its turns at or above its p90): waiting in the gateway's queue · waiting "
    "at the engine (the step running when it arrived, then the engine's queue) · the step "
    "that computed its prompt (its prompts and requests, its own included).", "",
    "| case | all: gateway · engine · prompt step | tail (≥ p90): gateway · engine · prompt "
    "step |", "| --- | --- | --- |"]


def capacity(run: Runner, flow: Flow, seed: int) -> float:
    """Requests per second the fleet completes under a flood of this flow's requests."""
    flood = replace(flow, rate=4 * GUESS[flow.max_tokens])
    return run([flood], "fcfs", None, seed).completed[flow.key]


def _mean(values: Sequence[float]) -> float:
    return statistics.mean(values) if values else 0.0


def flood(run: Runner, seeds: Sequence[int], fair: bool, share: float = 0.35) -> list[str]:
    """Scenario (a): the interactive key alone, then beside a batch flood at 2× capacity."""
    lines = []
    caps = {name: _mean([capacity(run, f, s) for s in seeds])
            for name, f in (("interactive", INTERACTIVE), ("batch", BATCH))}
    interactive = replace(INTERACTIVE, rate=0.25 * caps["interactive"])
    batch = replace(BATCH, rate=2 * caps["batch"])
    lines.append(f"Capacities (requests per simulated second, completed under a flood): "
                 f"interactive {caps['interactive']:.1f}, batch {caps['batch']:.1f}; "
                 f"offered: interactive {interactive.rate:.1f}/s (25%), batch "
                 f"{batch.rate:.1f}/s (200%)")
    cases: list[tuple[str, list[Flow], str, Queueing | None]] = [
        ("interactive alone", [interactive], "fcfs", None),
        ("+ batch flood, FCFS engines", [interactive, batch], "fcfs", None),
        ("+ batch flood, engine priority (batch at 1)",
         [interactive, replace(batch, priority=1)], "priority", None)]
    if fair:
        cases += [(f"+ batch flood, FCFS engines, gateway queue: {q.label()}",
                   [interactive, batch], "fcfs", q)
                  for q in (Queueing("keys"), Queueing("classes"),
                            Queueing("classes", batch_share=share),
                            Queueing("classes", prefill_cap=1),
                            Queueing("classes", batch_share=share, prefill_cap=1),
                            Queueing("classes", batch_share=share, avoid_prompting=True),
                            # The product's pacing (sharing.queue.class_prompts), its estimate
                            # of the engines' prompt speed right and a third off either way.
                            Queueing("classes", batch_prompts=1),
                            *(Queueing("classes", batch_share=PACED_SHARE, batch_prompts=1,
                                       prompt_rate=PROMPT_RATE * f) for f in (1, 0.75, 1.5)))]
    lines += ["", "| case | interactive TTFT p50 / p90 / p99 ms, per seed | p90 ÷ alone | "
              "batch completed /s (÷ batch alone) | share of idle capacity the batch used |",
              "| --- | --- | --- | --- | --- |"]
    alone: list[float] = []
    idle = 1 - interactive.rate / caps["interactive"]
    where = [line.format(key="interactive") for line in DIAGNOSIS_HEAD]
    for name, flows, scheduling, queue in cases:
        results = [run(flows, scheduling, queue, s) for s in seeds]
        where.append(diagnosis(name, results, "interactive"))
        p90 = [r.per_key["interactive"]["p90"] for r in results]
        alone = alone or p90
        used = _mean([r.completed.get("batch", 0.0) for r in results])
        lines.append(
            f"| {name} | " + " · ".join(
                "{p50:.0f}/{p90:.0f}/{p99:.0f}".format(**r.per_key["interactive"])
                for r in results)
            + " | " + " ".join(f"{a / max(b, 1e-9):.1f}" for a, b in zip(p90, alone, strict=True))
            + f" | {used:.1f} ({used / caps['batch']:.0%}) | "
            + (f"{used / (caps['batch'] * idle):.0%}" if "batch" in name else "–") + " |")
        print(lines[-1], flush=True)
    lines += ["", "Share of idle capacity: batch completed per second beside the interactive "
              "key ÷ (the batch flood's alone × the 75% of the fleet the interactive key "
              "leaves idle); over 100%: the two share engine steps (a short interactive "
              "request in a full batch costs less than its share of an idle fleet).", *where]
    return lines


def keys(run: Runner, seeds: Sequence[int], fair: bool, real: bool = False) -> list[str]:
    """Scenario (b): a small and a 10× key, 1.5× capacity together, FCFS; `real`: the rows
    the product's gateway can run (fair queue at the caps' sum, with and without pacing)."""
    cap = _mean([capacity(run, INTERACTIVE, s) for s in seeds])
    small = replace(INTERACTIVE, key="small", rate=1.5 * cap / 11, seed=21)
    big = replace(INTERACTIVE, key="big", rate=1.5 * cap * 10 / 11, seed=22)
    lines = [f"Capacity {cap:.1f} interactive requests per simulated second; offered: small "
             f"{small.rate:.1f}/s, big {big.rate:.1f}/s (150% together)", "",
             "| case | small key TTFT p50 / p90 / p99 ms, per seed | p90 ÷ alone | "
             "big key p90 ms | completed /s small · big |", "| --- | --- | --- | --- | --- |"]
    cases: list[tuple[str, list[Flow], Queueing | None]] = [
        ("small key alone", [small], None), ("beside the 10× key, FCFS", [small, big], None)]
    if fair and real:
        cases += [(f"beside the 10× key, gateway queue: {q.label()}", [small, big], q)
                  for q in (Queueing("keys", 32), Queueing("keys", 32, key_prompts=2))]
    elif fair:  # smaller caps: shorter steps, fewer prompts a step, less for the big key
        cases += [(f"beside the 10× key, gateway queue: {q.label()}", [small, big], q)
                  for q in (*(Queueing("keys", cap) for cap in (32, 16, 4, 1)),
                            Queueing("keys", 32, prefill_cap=1),
                            Queueing("keys", 8), Queueing("keys", 8, avoid_prompting=True),
                            # The product's pacing by key (sharing.queue.key_prompts), its
                            # estimate of the prompt speed right, a quarter low, a quarter and a
                            # half high, and looser (3 of the 4 replicas' prompt time a key).
                            *(Queueing("keys", 32, key_prompts=2, prompt_rate=PROMPT_RATE * f)
                              for f in (1, 0.75, 1.25, 1.5)),
                            Queueing("keys", 32, key_prompts=3))]
    alone: list[float] = []
    where = [line.format(key="small") for line in DIAGNOSIS_HEAD]
    for name, flows, queue in cases:
        results = [run(flows, "fcfs", queue, s) for s in seeds]
        where.append(diagnosis(name, results, "small"))
        p90 = [r.per_key["small"]["p90"] for r in results]
        alone = alone or p90
        lines.append(
            f"| {name} | " + " · ".join("{p50:.0f}/{p90:.0f}/{p99:.0f}".format(
                **r.per_key["small"]) for r in results)
            + " | " + " ".join(f"{a / max(b, 1e-9):.1f}" for a, b in zip(p90, alone, strict=True))
            + " | " + (" · ".join(f"{r.per_key['big']['p90']:.0f}" for r in results)
                       if "big" in results[0].per_key else "–")
            + f" | {_mean([r.completed['small'] for r in results]):.1f} · "
            f"{_mean([r.completed.get('big', 0.0) for r in results]):.1f} |")
        print(lines[-1], flush=True)
    return lines + where


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench fairness")
    parser.add_argument("--scenario", choices=("flood", "keys", "all"), default="all")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--seeds", default="7,8,9")
    parser.add_argument("--real", action="store_true")
    parser.add_argument("--speed", type=float, default=0.5)
    parser.add_argument("--fair-queue", action="store_true")
    parser.add_argument("--batch-share", type=float, default=0.35)
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.real:
        from bench.fairness_real import real_runner

        run = real_runner(args.seconds, args.speed)
    else:
        run = des_runner(args.seconds)
    lines = [f"python -m bench fairness {' '.join(argv)}".strip(), ""]
    if args.scenario in ("flood", "all"):
        lines += [*flood(run, seeds, args.fair_queue and not args.real, args.batch_share), ""]
    if args.scenario in ("keys", "all"):
        lines += keys(run, seeds, args.fair_queue, real=args.real)
    print("\n".join(lines))
    return 0
