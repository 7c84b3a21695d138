"""Routing policies on the discrete-event fleet (bench/fleet_des.py): fast, noise-free.

    python -m bench fleetsim [--workloads unique,chat,rag] [--gateways 1,4] [--seconds 15]
                             [--seeds 7,8,9] [--evidence] [--trace FILE]

The same engines, sessions and routing objects as `python -m bench fleet`, in virtual time:
a run takes seconds and gives the same figures every time, so policies can be compared over
several arrival seeds. Rates are sessions per simulated second (`python -m bench fleet` at
`--speed 0.5` offers half as many per real second): by default those of its 80% rows, but
for chat 18/s, below this model's saturation (the real probe overshoots for chat, see
bench/RESULTS.md). Windows mirror `python -m bench fleet --seconds 30 --speed 0.5`: 15
simulated seconds counted after 7.5 of warm-up.

`--evidence` adds, for each policy, what explains its time to first token on the workload:
how regular each replica's arrivals are (coefficient of variation of the gaps between them:
0.5 for round robin over 4 replicas, 1 for random placement), how often a request went to an
engine with a longer waiting queue than another engine's, and how many prompts were
prefilled in one step and how many requests finished in one step (cohorts). `--trace FILE`
writes every decision and engine step as JSON lines.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import statistics
from collections.abc import Sequence

from bench.fleet_des import Fleet, Turn, summary
from bench.workloads import Flow

RATES = {"unique": 40.0, "chat": 18.0, "rag": 25.6}
POLICIES = ("round_robin", "least_outstanding", "cache_aware")


def compare(workload: str, rate: float, gateways: int, seconds: float, seeds: Sequence[int],
            policies: Sequence[str] = POLICIES) -> list[str]:
    """Table rows: each policy's TTFT and throughput, and its p90 over round robin's, per
    seed (the same arrivals for every policy of a seed)."""
    rows = []
    base: dict[int, float] = {}
    for policy in ("round_robin", *[p for p in policies if p != "round_robin"]):
        if gateways > 1 and policy == "least_outstanding":
            continue
        results, hits = [], []
        for seed in seeds:
            fleet = Fleet(policy=policy, gateways=gateways)
            turns = fleet.run([Flow(workload, rate, seed=seed)], seconds, seconds / 2)
            results.append(summary(turns, fleet.window))
            hits.append(sum(e.model.hits for e in fleet.engines)
                        / max(sum(e.model.queries for e in fleet.engines), 1))
            if policy == "round_robin":
                base[seed] = results[-1]["p90"]
        ratios = [r["p90"] / max(base[s], 1e-9) for r, s in zip(results, seeds, strict=True)]
        rows.append(
            f"| {workload} ({rate:g}/s) | {policy} | {gateways} | "
            f"{statistics.mean(r['tok_s'] for r in results):.0f} | "
            + " · ".join(f"{r['p50']:.0f}/{r['p90']:.0f}/{r['p99']:.0f}" for r in results)
            + f" | {statistics.mean(hits):.0%} | "
            + " ".join(f"{x:.2f}" for x in ratios) + f" (median {statistics.median(ratios):.2f}) |")
        print(rows[-1], flush=True)
    return rows


def evidence(workload: str, rate: float, gateways: int, seconds: float, seed: int,
             trace: str | None) -> list[str]:
    lines = [f"Evidence ({workload}, {rate:g}/s, {gateways} gateway(s), seed {seed}):", "",
             "| policy | p90 ms | CV of arrival gaps per replica | sent to a longer queue "
             "| prompts prefilled in one step (share of requests: 1 / 2 / 3+) | requests "
             "finishing in one step (share: 1 / 2 / 3+) |",
             "| --- | --- | --- | --- | --- | --- |"]
    out = open(trace, "w") if trace else None  # noqa: SIM115 - closed below
    try:
        for policy in POLICIES:
            fleet = Fleet(policy=policy, gateways=gateways, trace=True)
            turns = fleet.run([Flow(workload, rate, seed=seed)], seconds, seconds / 2)
            lines.append(_evidence_row(policy, fleet, turns))
            print(lines[-1], flush=True)
            if out is not None:
                for record in (*fleet.decisions, *fleet.steps):
                    out.write(json.dumps([policy, *record]) + "\n")
    finally:
        if out is not None:
            out.close()
    return lines


def _evidence_row(policy: str, fleet: Fleet, turns: list[Turn]) -> str:
    start, end = fleet.window
    counted = [t for t in turns if t.counted]
    cvs = []
    for replica in range(fleet.replicas):
        times = sorted(t.started for t in counted if t.replica == replica)
        gaps = [b - a for a, b in itertools.pairwise(times)]
        cvs.append(statistics.pstdev(gaps) / statistics.mean(gaps) if len(gaps) > 1 else 0.0)
    decisions = [d for d in fleet.decisions if start <= d[1] <= end]
    longer = sum(1 for d in decisions if d[7][d[3]] > min(d[7]))
    steps = [s for s in fleet.steps if start <= s[1] <= end]
    return (f"| {policy} | {summary(turns, fleet.window)['p90']:.0f} | "
            + " ".join(f"{cv:.2f}" for cv in cvs)
            + f" | {longer / max(len(decisions), 1):.0%} | {_shares(s[6] for s in steps)} | "
            f"{_shares(s[7] for s in steps)} |")


def _shares(sizes: object) -> str:
    """Of the requests in groups of these sizes, the share in groups of 1, 2 and 3 or more."""
    count: collections.Counter[int] = collections.Counter()
    for size in sizes:  # type: ignore[attr-defined]
        if size:
            count[min(size, 3)] += size
    total = sum(count.values()) or 1
    return " / ".join(f"{count[k] / total:.0%}" for k in (1, 2, 3))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench fleetsim")
    parser.add_argument("--workloads", default="unique,chat,rag")
    parser.add_argument("--rates", default="", help="e.g. unique=40,chat=18 (per sim. s)")
    parser.add_argument("--gateways", default="1,4")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--seeds", default="7,8,9")
    parser.add_argument("--evidence", action="store_true")
    parser.add_argument("--trace", default=None)
    args = parser.parse_args(argv)
    rates = dict(RATES)
    for item in filter(None, args.rates.split(",")):
        name, value = item.split("=")
        rates[name] = float(value)
    seeds = [int(s) for s in args.seeds.split(",")]
    lines = [f"python -m bench fleetsim {' '.join(argv)}".strip(), "",
             "| workload (sessions/s) | policy | gateways | output tok/s | TTFT p50/p90/p99 ms, "
             "per seed | prefix hit rate | p90 ÷ round robin's, per seed |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for workload in args.workloads.split(","):
        for gateways in (int(g) for g in args.gateways.split(",")):
            lines += compare(workload, rates[workload], gateways, args.seconds, seeds)
    if args.evidence:
        workload = args.workloads.split(",")[0]
        lines += ["", *evidence(workload, rates[workload], 1, args.seconds, seeds[0],
                                args.trace)]
    print("\n".join(lines))
    return 0
