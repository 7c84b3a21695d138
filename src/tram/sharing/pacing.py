"""Which started requests count as computing their prompt, per group (a class, a key): the
fair queue's pacing (sharing/fairqueue.py `class_prompts`, `key_prompts`).

The gateway never sees when an engine is done with a JSON request's prompt (its first token
is not sent apart), so a request counts from its start until an estimated end (its prompt's
tokens over the engines' prompt speed) or until it is done, whichever is first. Ends are kept
in one heap per group; a request done early is marked and dropped when it surfaces, and ended
ones are dropped as new ones are added, so a heap holds at most what started within one
prompt estimate. `Contention` says whether another key sent the model a request lately.
"""

from __future__ import annotations

import collections
import heapq
import itertools
from dataclasses import dataclass, field

__all__ = ["CONTENDED_SECONDS", "Contention", "Prompting"]

# A key counts as sharing the model while another key sent it a request this recently.
CONTENDED_SECONDS = 60.0

@dataclass(order=True)
class _Entry:
    end: float
    seq: int  # ties in arrival order; items are never compared
    item: object = field(compare=False)
    counted: bool = field(default=True, compare=False)


class Prompting:
    """Started requests still computing their prompt, per group."""

    def __init__(self) -> None:
        self._ends: dict[str, list[_Entry]] = {}
        self._counted: collections.Counter[str] = collections.Counter()
        self._entries: dict[tuple[str, int], _Entry] = {}  # (group, id(item)): its entry
        self._seq = itertools.count()

    def add(self, group: str, now: float, end: float, item: object) -> None:
        """Count `item` (added once) until `end` or its `remove`."""
        self._drop_ended(group, now)
        entry = _Entry(end, next(self._seq), item)
        heapq.heappush(self._ends.setdefault(group, []), entry)
        self._entries[(group, id(item))] = entry
        self._counted[group] += 1

    def remove(self, group: str, item: object) -> None:
        """`item` is done before its estimated end: it no longer counts (O(1))."""
        entry = self._entries.pop((group, id(item)), None)
        if entry is not None:
            entry.counted = False
            self._counted[group] -= 1
            if not self._counted[group]:  # what is left is uncounted: drop the group
                del self._ends[group], self._counted[group]

    def count(self, group: str, now: float) -> int:
        """The group's requests counted as computing their prompt at `now`."""
        self._drop_ended(group, now)
        return self._counted[group] if group in self._ends else 0

    def next_end(self, group: str, now: float) -> float | None:
        """When the group's next counted prompt ends, or None if none counts at `now`."""
        if not self.count(group, now):
            return None
        return self._ends[group][0].end

    def groups(self) -> list[str]:
        return list(self._ends)

    def _drop_ended(self, group: str, now: float) -> None:
        ends = self._ends.get(group)
        if ends is None:
            return
        while ends and (not ends[0].counted or ends[0].end <= now):
            entry = heapq.heappop(ends)
            if entry.counted:
                self._counted[group] -= 1
                del self._entries[(group, id(entry.item))]
        if not ends:
            del self._ends[group]
            del self._counted[group]


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
