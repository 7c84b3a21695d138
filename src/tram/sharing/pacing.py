"""Which started requests count as computing their prompt, per group (a class, a key): the
fair queue's pacing (sharing/fairqueue.py `class_prompts`, `key_prompts`).

The gateway never sees when an engine is done with a JSON request's prompt (its first token
is not sent apart), so a request counts from its start until an estimated end (its prompt's
tokens over the engines' prompt speed) or until it is done, whichever is first. Ends are kept
in one heap per group and dropped lazily once past; a group's count is the heap's size after
that. `Contention` says whether a key shares the model with another one right now.
"""

from __future__ import annotations

import heapq
import itertools

__all__ = ["CONTENDED_SECONDS", "Contention", "Prompting"]

# A key counts as sharing the model while another key sent it a request this recently.
CONTENDED_SECONDS = 60.0


class Prompting:
    """Started requests still computing their prompt, per group."""

    def __init__(self) -> None:
        self._ends: dict[str, list[tuple[float, int, object]]] = {}
        self._seq = itertools.count()

    def add(self, group: str, end: float, item: object) -> None:
        heapq.heappush(self._ends.setdefault(group, []), (end, next(self._seq), item))

    def remove(self, group: str, item: object) -> None:
        """`item` is done before its estimated end: it no longer counts."""
        ends = self._ends.get(group)
        if ends and any(entry[2] is item for entry in ends):  # a handful at most
            ends[:] = [entry for entry in ends if entry[2] is not item]
            heapq.heapify(ends)
        if not ends:
            self._ends.pop(group, None)

    def count(self, group: str, now: float) -> int:
        """The group's requests counted as computing their prompt at `now`."""
        ends = self._ends.get(group)
        if not ends:
            return 0
        while ends and ends[0][0] <= now:
            heapq.heappop(ends)
        if not ends:
            del self._ends[group]
            return 0
        return len(ends)

    def next_end(self, group: str, now: float) -> float | None:
        """When the group's next counted prompt ends, or None if none counts at `now`."""
        return self._ends[group][0][0] if self.count(group, now) else None

    def groups(self) -> list[str]:
        return list(self._ends)


class Contention:
    """The two keys seen last (distinct, latest first): enough to say whether any key other
    than a given one sent a request within `window` (in the caller's clock), in O(1)."""

    def __init__(self, window: float = CONTENDED_SECONDS) -> None:
        self.window = window
        self._last: list[tuple[str, float]] = []

    def seen(self, key: str, now: float) -> None:
        others = [entry for entry in self._last if entry[0] != key]
        self._last = [(key, now), *others[:1]]

    def contended(self, key: str, now: float) -> bool:
        return any(other != key and now - at <= self.window for other, at in self._last)
