"""CPU per cache_aware routing decision: 64 replicas, a table learned from 10,000 prefixes.

    python -m bench routing [--replicas 64] [--prefixes 10000]

Times, alone and best of several rounds: hashing a request's prompt into blocks (what
relay/steps.py does per request for a pool with several replicas), and the decision itself
(`CacheAware.choose`: the learned table, the ring, the load bound, the scores, the table
update), for conversations the table knows (a later turn) and ones it does not (a first turn).
"""

from __future__ import annotations

import argparse
import random
import time
from dataclasses import dataclass

from tram.config import RoutingConfig
from tram.routing.policies import RoutingHints
from tram.routing.prefix import CacheAware, prefix_key


@dataclass(eq=False)
class _Replica:
    url: str
    outstanding: int = 0
    engine_penalty: float = 0.0
    routing_load: float = 0.0  # as the registry keeps it (Replica.update_load)
    engine_read_at: float = 0.0


def _conversation(rng: random.Random, user: int, turns: int) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": "You are a helpful assistant. " * 50},
                {"role": "user", "content": f"user {user}: " + "lorem ipsum " * 100}]
    for turn in range(turns):
        messages += [{"role": "assistant", "content": f"answer {turn} " * 60},
                     {"role": "user", "content": f"more {turn} " * 40}]
    return messages


def _best(run: object, rounds: int = 5) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        count = run()  # type: ignore[operator]
        times.append((time.perf_counter() - started) / count)
    return min(times) * 1e6


def run(replicas: int, prefixes: int) -> str:
    config = RoutingConfig(policy="cache_aware")
    fleet = [_Replica(f"http://10.0.{i // 250}.{i % 250}:8000/v1") for i in range(replicas)]
    rng = random.Random(3)
    for replica in fleet:
        replica.outstanding = rng.randrange(0, 8)
        replica.routing_load = replica.outstanding
    policy = CacheAware(config)
    known = [prefix_key(_conversation(rng, u, 3), config.block_chars, config.max_blocks)
             for u in range(prefixes)]
    for key in known:
        policy.choose(fleet, RoutingHints(prefix=key))
    fresh = [prefix_key(_conversation(rng, prefixes + u, 0), config.block_chars,
                        config.max_blocks) for u in range(2000)]
    messages = _conversation(rng, 1, 3)

    def hashing() -> int:
        for _ in range(2000):
            prefix_key(messages, config.block_chars, config.max_blocks)
        return 2000

    def decide(keys: list) -> object:  # type: ignore[type-arg]
        def go() -> int:
            for key in keys:
                policy.choose(fleet, RoutingHints(prefix=key))
            return len(keys)
        return go

    blocks = len(known[0].blocks)
    rows = [("hash the prompt (chat of 7 messages, ~6,000 characters, "
             f"{blocks} blocks)", _best(hashing)),
            ("decide: a later turn (table hit)", _best(decide(known[:2000]))),
            ("decide: a first turn (table miss, ring owner)", _best(decide(fresh)))]
    lines = [f"python -m bench routing --replicas {replicas} --prefixes {prefixes}", "",
             f"| cache_aware, {replicas} replicas, {len(policy._table)} table entries "
             f"from {prefixes} prefixes | µs CPU, best of 5 |", "| --- | --- |"]
    lines += [f"| {name} | {value:.1f} |" for name, value in rows]
    lines.append(f"| whole decision (hash + decide, table hit) | {rows[0][1] + rows[1][1]:.1f} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench routing")
    parser.add_argument("--replicas", type=int, default=64)
    parser.add_argument("--prefixes", type=int, default=10_000)
    args = parser.parse_args(argv)
    print(run(args.replicas, args.prefixes))
    return 0
