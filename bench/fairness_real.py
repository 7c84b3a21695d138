"""`python -m bench fairness --real`: the fairness scenarios through `tram serve` in front of
bench/fleet_sim.py over HTTP, in sped-up real time (rates and times in simulated units, as
the discrete-event runs report them). Each key is a virtual key created through
/admin/keys, so a gateway-side queue keyed by the caller sees the keys the scenario means;
an engine priority goes in the request's `priority` field, which the gateway passes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Sequence
from pathlib import Path

import httpx

from bench.fairness import DRAIN, Outcome, Queueing, Runner
from bench.fleet import Load, _fleet, _gateway, _percentile
from bench.gateway import stop_processes
from bench.loadgen import KEY
from bench.workloads import Flow


def _virtual_key(url: str, name: str) -> str:
    answer = httpx.post(url + "/admin/keys", json={"name": name}, timeout=30,
                        headers={"Authorization": f"Bearer {KEY}"})
    answer.raise_for_status()
    key: str = answer.json()["key"]
    return key


async def _run_flows(loads: Sequence[Load], flows: Sequence[Flow], seconds: float,
                     speed: float) -> None:
    runs = [asyncio.ensure_future(load.open_loop(flow.rate * speed, seconds, seconds / 2))
            for load, flow in zip(loads, flows, strict=True)]
    # A flood's backlog drains for long: what is still running then is cut off (its
    # requests count as errors, not as times to first token).
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*runs), seconds * 1.5 + DRAIN / speed)


def real_runner(seconds: float, speed: float) -> Runner:
    """`seconds` of window per run in real time (as `python -m bench fleet --seconds`)."""

    def run(flows: Sequence[Flow], scheduling: str, queue: Queueing | None,
            seed: int) -> Outcome:
        processes = []
        with tempfile.TemporaryDirectory(prefix="tram-fair-") as tmp:
            try:
                fleet, urls = _fleet(4, speed, scheduling)
                processes.append(fleet)
                gateway, url = _gateway(urls, "cache_aware", 1, Path(tmp),
                                        *_queue_yaml(queue, len(urls), speed))
                processes.append(gateway)
                tokens = {flow.key: _virtual_key(url, flow.key) for flow in flows}
                loads = [Load(url, speed, flow.workload, flow.seed * 100 + seed,
                              flow.max_tokens, flow.priority, tokens[flow.key])
                         for flow in flows]
                asyncio.run(_run_flows(loads, flows, seconds, speed))
                return _outcome(loads, flows, seconds, speed)
            finally:
                stop_processes(processes)

    return run


def _queue_yaml(queue: Queueing | None, replicas: int, speed: float) -> tuple[str, str]:
    """The gateway's settings for a row's queue: `max_in_flight` for the replicas' caps
    together (the product bounds a model, not a replica), `sharing.queue` for its pacing, the
    prompt speed in real time (the engines run `speed` times as fast as simulated)."""
    if queue is None:
        return "", ""
    if queue.order != "keys" or queue.prefill_cap != float("inf") or queue.avoid_prompting:
        raise ValueError(f"not a setting of the product's gateway: {queue.label()}")
    settings = {"prompt_tokens_per_second": queue.prompt_rate * speed}
    if queue.key_prompts is not None:
        settings["key_prompts"] = queue.key_prompts
    body = ", ".join(f"{name}: {value:g}" for name, value in settings.items())
    return (f"    max_in_flight: {int(queue.replica_cap * replicas)}\n",
            f"sharing:\n  queue: {{{body}}}\n")


def _outcome(loads: Sequence[Load], flows: Sequence[Flow], seconds: float,
             speed: float) -> Outcome:
    per_key, completed = {}, {}
    for load, flow in zip(loads, flows, strict=True):
        stats, start = load.stats, load.window_start
        per_key[flow.key] = {"p50": _percentile(stats.ttft, .5),
                             "p90": _percentile(stats.ttft, .9),
                             "p99": _percentile(stats.ttft, .99), "turns": stats.requests,
                             "censored": stats.errors}
        done = sum(1 for t in load.done_at if start <= t <= start + seconds)
        completed[flow.key] = done / (seconds * speed)
    return Outcome(per_key, completed)
