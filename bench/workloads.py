"""The fleet benchmarks' client load: what each session sends, and who sends it.

One session's turns depend only on its workload, its flow's seed and its number, so the real
fleet (bench/fleet.py, over HTTP through `tram serve`) and the discrete-event fleet
(bench/fleet_des.py) send the same prompts. Workloads (random text, fixed seeds):

  chat     agent-like conversations of 8 turns: one of 4 shared system prompts (~1,500
           tokens), a first message (~300 tokens), then tool output or pasted text each turn
           (~200 tokens); each turn resends the whole conversation (up to ~4,000 tokens)
  rag      one of 48 documents (~4,000 tokens each: together more than one replica's KV
           cache holds; popularity 1/sqrt(rank)) and a unique question
  unique   unrelated ~1,500-token prompts (the control: nothing to reuse)

A `Flow` tags its requests for the gateway and the engines: the key that sends them (a virtual
key's name; a gateway-side fair queue shares capacity between keys by `weight`), its class
(`interactive` or `batch`) and the `priority` the engine schedules it by (vLLM's request
field: lower is served first, under `--scheduling-policy priority`).
"""

from __future__ import annotations

import random
from collections.abc import Generator
from dataclasses import dataclass
from functools import cache
from typing import Literal

__all__ = ["WORKLOADS", "Flow", "Shared", "answer_text", "session"]

WORDS = [f"{a}{b}" for a in "bcdfghklmnprstvz" for b in ("a", "e", "i", "o", "u", "an", "on")]
WORKLOADS = ("chat", "rag", "unique")
Messages = list[dict[str, str]]


def text(rng: random.Random, tokens: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(tokens))  # ~4 characters a word


@dataclass(frozen=True)
class Flow:
    """One stream of sessions: Poisson arrivals at `rate` sessions per second."""

    workload: str = "unique"
    rate: float = 1.0
    key: str = "default"
    cls: Literal["interactive", "batch"] = "interactive"
    priority: int = 0  # sent as the request's `priority` when not 0
    weight: float = 1.0  # the key's share in a gateway-side fair queue
    max_tokens: int = 24
    seed: int = 7


class Shared:
    """The texts sessions share: system prompts and documents (the same in every process)."""

    def __init__(self) -> None:
        rng = random.Random(1)
        self.systems = [text(rng, 1500) for _ in range(4)]
        self.docs = [text(rng, 4000) for _ in range(48)]
        self.popularity = [1 / (i + 1) ** 0.5 for i in range(48)]


@cache
def shared() -> Shared:
    return Shared()


def answer_text(tokens: int) -> str:
    """What the simulated engine answers (its tokens are w0, w1, …)."""
    return "".join(f"w{i} " for i in range(tokens))


def session(workload: str, seed: int, number: int) -> Generator[Messages, str, None]:
    """A session's turns: each `yield` is a request's messages, `send` it the answer."""
    rng = random.Random(seed * 1_000_003 + number)
    texts = shared()
    if workload == "chat":
        messages = [{"role": "system", "content": rng.choice(texts.systems)},
                    {"role": "user", "content": text(rng, 300)}]
        for _ in range(8):
            answer = yield messages
            messages = [*messages, {"role": "assistant", "content": answer},
                        {"role": "user", "content": text(rng, 200)}]
    elif workload == "rag":
        doc = rng.choices(texts.docs, weights=texts.popularity)[0]
        yield [{"role": "system", "content": "Answer from the document."},
               {"role": "user", "content": f"{doc}\nQuestion: {text(rng, 30)}"}]
    elif workload == "unique":
        yield [{"role": "user", "content": text(rng, 1500)}]
    else:
        raise ValueError(f"unknown workload {workload!r}")
