"""A request's priority: its key's class (`interactive`, `batch`) or number, resolved against
tram.yaml's `sharing.priorities`, and raised to the batch class for a batch line.

Numbers follow vLLM's `priority` field: lower runs first; an engine started with
`--scheduling-policy priority` orders its waiting queue (and preempts) by it."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["KeyPriority", "priority_of"]

KeyPriority = str | int  # a class name ("interactive", "batch") or a number


def priority_of(key_priority: KeyPriority, traffic: str, classes: Mapping[str, int]) -> int:
    """The number a request runs at: its key's, and for a batch line at least the batch
    class's (a key never makes its batch lines more urgent than its own requests)."""
    own = key_priority if isinstance(key_priority, int) else classes.get(key_priority, 0)
    if traffic == "batch":
        return max(own, classes.get("batch", own))
    return own
