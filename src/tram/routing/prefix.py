"""Cache- and load-aware routing: send a request where its prompt's prefix is likely cached,
unless that replica is busier than its fair share.

A request's prompt (its messages, rendered as a chat template would lay them out) is cut into
fixed-size blocks of characters, each hashed together with everything before it (CRC-32
chained: the hash of block i names the whole prefix up to i, and is the same in every gateway
process). Four signals decide:

* the table this gateway has learned from its own decisions (block hash → the replica it sent
  that prefix to; SGLang's router keeps an approximate tree the same way): the deepest block
  found names the replica most likely to hold the longest part of this prompt, unless that
  block went to several replicas (a shared system prompt: cached everywhere, no clue);
* the conversation's anchor (what precedes the first user message and that message's first
  `anchor_chars` characters, or the `user` field) placed on a consistent-hash ring of the
  replicas: every gateway computes the same owner without sharing any state, so a
  conversation's turns meet the same cache however many gateways run. The opening of the
  first message tells conversations that share a system prompt apart, and names a document a
  prompt opens with (RAG), so every request about one document meets it in one cache;
* load: the gateway's own requests in flight per replica plus what the engines report on
  their `/metrics` (waiting queue and KV usage, i.e. every gateway's overload; scraped in the
  background by `engine_load`);
* what this gateway sent each replica lately (`_Pending`): prompts whose prefill is most
  likely still ahead of that replica. Requests in flight do not show it: most are decoding,
  and identical ones admitted together finish together, so a count of them sends the next
  arrivals in a burst to the replica that just emptied (bench/RESULTS.md, issue 27).

A prompt whose prefix went somewhere before (a learned match), or whose anchor this gateway
has routed lately, is scored: candidates over the load bound (Mirrokni et al.'s consistent
hashing with bounded loads: at most `load_factor` × the mean, plus `load_slack` requests so
that a quiet fleet is not reshuffled by one request) are passed over; the rest are scored
`prefix_weight × saved(match) + anchor_weight / ring rank − load_weight × load / bound`, with
weights from tram.yaml (`routing:`). New work — a conversation's first request, an anchor
not routed lately, nothing of it learned but prefixes every replica holds — goes to the
replica with the least load plus recent sends, its owner kept within a margin that scales
with how often this gateway's anchors come back: where documents and conversations recur, an
unseen one is likely cached at its owner by another gateway; where prompts never recur, the
owner is worth nothing and new work is spread as evenly as round robin would.
"""

from __future__ import annotations

import bisect
import math
import operator
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tram.config import RoutingConfig

__all__ = ["CacheAware", "PrefixKey", "prefix_key"]

_VNODES = 64  # ring points per replica: an even spread of anchors


@dataclass(frozen=True)
class PrefixKey:
    blocks: tuple[int, ...]  # chained hashes of the prompt's complete blocks
    anchor: int  # the conversation's identity (opening of the first user message, or `user`)
    sticky_user: bool = False
    opening: bool = False  # no assistant or tool message yet: the conversation's first request


def prefix_key(messages: Sequence[Any], block_chars: int, max_blocks: int,
               user: str | None = None, anchor_chars: int = 1024) -> PrefixKey:
    """The blocks and anchor of a chat request's messages (pydantic messages or dicts)."""
    parts: list[str] = []
    anchor_end = -1
    size = 0
    limit = block_chars * max_blocks
    for message in messages:
        if isinstance(message, dict):
            role, content = message.get("role"), message.get("content")
        else:  # the validated request's messages
            role, content = message.role, message.content
        if not isinstance(content, str):
            content = "".join(_part_text(part) for part in content or ())
        if anchor_end < 0 and role == "user":
            anchor_end = size + len(role) + 4 + min(len(content), anchor_chars)
        parts.append(f"<|{role}|>{content}")
        size += len(parts[-1])
        if size >= limit:
            break
    data = "".join(parts)[:limit].encode("utf-8", "surrogatepass")
    view = memoryview(data)
    blocks = []
    crc = 0
    for start in range(0, len(data) - block_chars + 1, block_chars):
        crc = zlib.crc32(view[start:start + block_chars], crc)
        blocks.append(crc)
    if user:
        return PrefixKey(tuple(blocks), zlib.crc32(user.encode()), sticky_user=True)
    anchor = zlib.crc32(view[:anchor_end if anchor_end >= 0 else len(data)])
    opening = not any(_field(m, "role") in _ANSWERS for m in messages)
    return PrefixKey(tuple(blocks), anchor, opening=opening)


_ANSWERS = frozenset({"assistant", "tool", "function"})


def _field(message: Any, name: str) -> Any:
    return message.get(name) if isinstance(message, dict) else getattr(message, name, None)


def _part_text(part: Any) -> str:
    text = _field(part, "text")
    if isinstance(text, str):
        return text
    image = _field(part, "image_url")
    url = _field(image, "url") if image is not None else None
    return f"<image:{url[:256]}>" if isinstance(url, str) else ""


_LOAD = operator.attrgetter("routing_load")
_RECURRENCE_RATE = 0.02  # the recurrence average's weight of one decision (~50 decisions)
_SHARED = "*"  # a learned block that went to several replicas


def _setting(value: float | None, config: RoutingConfig, name: str, default: float) -> float:
    if value is not None:
        return value
    return float(getattr(config, name, default))


class _Pending:
    """Per replica, what this gateway sent there recently: each request counts its share of
    the prompt not expected in the cache (1 for a prompt with nothing known cached), decaying
    with the time constant `seconds` — the prefill that replica most likely still has ahead.
    The requests in flight do not say it: most of them are decoding, and identical requests
    admitted together finish together, so a count of them herds the next arrivals onto the
    replica that just emptied (bench/RESULTS.md, issue 27).

    Every value is kept as of one base time, so that reading them all at `now` takes one
    exp(): value(now) = `values[url]` × `scale(now)`."""

    def __init__(self, seconds: float) -> None:
        self._seconds = max(seconds, 1e-6)
        self._base = 0.0
        self.values: dict[str, float] = {}
        self._read_at: dict[str, float] = {}  # the engine reading each value is newer than

    def reading(self, url: str, read_at: float) -> None:
        """The replica's engine was read at `read_at` (its own clock): what was sent there
        before is in that reading (waiting, running or done), so it no longer counts here.
        Without this, prompts sent fast to engines that report an empty queue outweighed
        an engine reporting 50 waiting."""
        if read_at > self._read_at.get(url, 0.0):
            self._read_at[url] = read_at
            self.values.pop(url, None)

    def scale(self, now: float) -> float:
        """What the stored values are multiplied by to be read at `now`."""
        age = (now - self._base) / self._seconds
        if age > 30.0:  # rebase (the values would grow past what a float holds well)
            factor = math.exp(-age)
            self.values = {u: v * factor for u, v in self.values.items() if v * factor > 1e-3}
            self._base, age = now, 0.0
        return math.exp(-age)

    def at(self, url: str, now: float) -> float:
        return self.values.get(url, 0.0) * self.scale(now)

    def add(self, url: str, amount: float, now: float) -> None:
        scale = self.scale(now)
        self.values[url] = self.values.get(url, 0.0) + amount / scale


class LoadAware(Protocol):
    url: str
    # This gateway's requests in flight on the replica plus the engine's queue and KV
    # pressure (everyone's). Kept up to date by the registry (Replica.update_load).
    routing_load: float
    engine_read_at: float  # when the engine's part of it was read (0: never)


class _Ring:
    """Replicas on a consistent-hash ring (`_VNODES` points each)."""

    def __init__(self, urls: tuple[str, ...]) -> None:
        points = sorted((zlib.crc32(f"{url}#{v}".encode()), index)
                        for index, url in enumerate(urls) for v in range(_VNODES))
        self.hashes = [h for h, _ in points]
        self.owners = [index for _, index in points]
        self.count = len(urls)
        self.index = {url: i for i, url in enumerate(urls)}

    def order(self, key: int, wanted: int) -> list[int]:
        """The first `wanted` distinct replicas (indices) clockwise from `key`."""
        found: list[int] = []
        start = bisect.bisect_left(self.hashes, key)
        total = len(self.hashes)
        for step in range(total):
            owner = self.owners[(start + step) % total]
            if owner not in found:
                found.append(owner)
                if len(found) == wanted:
                    break
        return found


class CacheAware:
    """The policy (routing.policy: cache_aware). `last_reason` and `last_match` describe the
    last decision, for the pool's metrics.

    `clock` (seconds) times the recent-sends signal; `pending_seconds`, `pending_weight` and
    `owner_margin` default to the routing config's fields of those names where it has them.
    """

    def __init__(self, config: RoutingConfig, clock: Callable[[], float] = time.monotonic,
                 pending_seconds: float | None = None, pending_weight: float | None = None,
                 owner_margin: float | None = None) -> None:
        self._config = config
        self._table: dict[int, str] = {}
        self._anchors: dict[int, None] = {}  # anchors this gateway routed lately
        self._rings: dict[tuple[int, int, int, int], _Ring] = {}
        self._clock = clock
        self._pending = _Pending(_setting(pending_seconds, config, "pending_seconds", 0.5))
        self._pending_weight = _setting(pending_weight, config, "pending_weight", 8.0)
        self._owner_margin = _setting(owner_margin, config, "owner_margin", 8.0)
        # The share of recent requests whose anchor this gateway had routed before: how much
        # an unseen opening's owner is worth (RAG documents and conversations come back,
        # unrelated prompts do not). Starts at 1: the owner first, until shown otherwise.
        self.recurrence = 1.0
        self.last_reason = "none"
        self.last_match = 0.0

    def choose(self, candidates: Sequence[Any], hints: Any) -> Any:
        key: PrefixKey | None = getattr(hints, "prefix", None)
        now = self._clock()
        if key is None or len(candidates) == 1:
            self.last_reason, self.last_match = "load_fallback", 0.0
            chosen = self._spread(candidates, (), now)
            self._sent(chosen, 1.0, now)
            return chosen
        ring = self._ring(candidates)
        matched, depth = self._deepest(key.blocks, ring)
        order = ring.order(key.anchor, min(self._config.anchor_candidates, len(candidates)))
        owner = candidates[order[0]]
        seen = self._seen(key.anchor)
        spread = matched is None and key.opening and not key.sticky_user and not seen
        if spread:
            # New work: a conversation's first request, an anchor this gateway has not
            # routed lately, nothing of it learned but prefixes every replica holds. It goes
            # where the least prefill is ahead, its owner kept within a margin as large as
            # openings here tend to come back (bench/RESULTS.md, issue 27). Learned only if
            # that is the owner: its later turns, and the same opening again, go to the
            # owner as every gateway's do.
            chosen = self._spread(candidates, order, now)
            reason = "anchor_owner" if chosen is owner else "load_spill"
        else:
            chosen, reason = self._score(candidates, order, matched, depth, key)
        self.last_reason = reason
        self.last_match = depth / max(len(key.blocks), 1) if reason == "prefix_hit" else 0.0
        self._sent(chosen, 1.0 - self.last_match, now)
        if not spread or chosen is owner:
            self._learn(key.blocks, chosen.url)
        return chosen

    def _sent(self, replica: Any, amount: float, now: float) -> None:
        """A prompt sent to `replica`: counted after its latest engine reading is applied (a
        reading taken before this send must not wipe it out later)."""
        self._pending.reading(replica.url, replica.engine_read_at)
        self._pending.add(replica.url, amount, now)

    def _seen(self, anchor: int) -> bool:
        """Whether this gateway routed this anchor lately; remembered from now on."""
        anchors = self._anchors
        seen = anchor in anchors
        self.recurrence += _RECURRENCE_RATE * (seen - self.recurrence)
        if seen:
            return True
        anchors[anchor] = None
        if len(anchors) > self._config.table_size:
            for stale in list(anchors)[:len(anchors) // 2]:
                del anchors[stale]
        return False

    def _spread(self, candidates: Sequence[Any], order: Sequence[int], now: float) -> Any:
        """The replica with the least load and recent sends (`pending_weight` requests'
        worth for each prompt sent there `pending_seconds` ago, decaying); the anchor's
        owner (order[0]) unless another is below it by `owner_margin` × the recurrence,
        then ring order."""
        pending = self._pending
        for replica in candidates:
            pending.reading(replica.url, replica.engine_read_at)
        weight = self._pending_weight * pending.scale(now)
        values = pending.values
        best, best_load = candidates[0], float("inf")
        for rank, index in enumerate(order):
            replica = candidates[index]
            load = replica.routing_load + weight * values.get(replica.url, 0.0)
            if rank == 0:
                load -= self._owner_margin * self.recurrence
            if load < best_load:
                best, best_load = replica, load
        for replica in candidates:
            load = replica.routing_load + weight * values.get(replica.url, 0.0)
            if load < best_load:
                best, best_load = replica, load
        return best

    def _score(self, candidates: Sequence[Any], order: Sequence[int], matched: int | None,
               depth: int, key: PrefixKey) -> tuple[Any, str]:
        """The best of the learned match, the owner and its ring successors, within the
        load bound (on routing_load)."""
        config = self._config
        # Only the few scored candidates' loads are read; the bound needs the total (two
        # C-level passes over the candidates: a decision stays cheap with 64 replicas).
        total = sum(map(_LOAD, candidates))
        bound = config.load_factor * total / len(candidates) + config.load_slack
        scored: dict[int, float] = {}
        for rank, index in enumerate(order):
            scored[index] = config.anchor_weight / (rank + 1)
        if matched is not None:
            # What the match saves, in characters; a short shared prefix (a system prompt,
            # soon cached everywhere) counts for little beside the conversation's owner, a
            # long one (its own history, a shared document) for more.
            chars = depth * config.block_chars
            scored[matched] = scored.get(matched, 0.0) \
                + config.prefix_weight * chars / (chars + config.prefix_half_chars)
        best, best_score = -1, float("-inf")
        for index, bonus in scored.items():
            load = candidates[index].routing_load
            if load > bound:
                continue
            score = bonus - config.load_weight * load / bound
            if score > best_score:
                best, best_score = index, score
        if best < 0:  # every favoured replica is over the bound: the least loaded one
            return min(candidates, key=_LOAD), "load_fallback"
        if best == matched:
            return candidates[best], "prefix_hit"
        if best == order[0]:
            return candidates[best], "sticky_user" if key.sticky_user else "anchor_owner"
        return candidates[best], "load_spill"

    def _ring(self, candidates: Sequence[Any]) -> _Ring:
        """The ring of these candidates, built once per set of replicas, known by its size and
        three members' identities (O(1): hashing 64 URLs per request cost more than the rest
        of the decision). A set that changed only inside, at the same size, keeps the old
        ring until its ends change: still a valid replica each time, briefly another one."""
        middle = candidates[len(candidates) // 2]
        key = (len(candidates), id(candidates[0]), id(middle), id(candidates[-1]))
        ring = self._rings.get(key)
        if ring is None:
            if len(self._rings) > 64:
                self._rings.clear()
            ring = self._rings[key] = _Ring(tuple(c.url for c in candidates))
        return ring

    def _deepest(self, blocks: tuple[int, ...], ring: _Ring) -> tuple[int | None, int]:
        """The candidate (index) this gateway sent the longest part of this prompt to; none
        when that part went to several replicas (a system prompt every conversation shares:
        likely cached everywhere, it says nothing about where this one belongs)."""
        table = self._table
        for depth in range(len(blocks), 0, -1):
            url = table.get(blocks[depth - 1])
            if url is None:
                continue
            if url is _SHARED:
                return None, 0
            index = ring.index.get(url)
            if index is not None:
                return index, depth
        return None, 0

    def _learn(self, blocks: tuple[int, ...], url: str) -> None:
        table = self._table
        for block in blocks:
            known = table.get(block)
            if known is None or known is url or known == url:
                table[block] = url
            else:
                table[block] = _SHARED  # sent to more than one replica
        if len(table) > self._config.table_size:
            # Forget the older half (a dict keeps insertion order): an approximate LRU that
            # costs nothing per request.
            for stale in list(table)[:len(table) // 2]:
                del table[stale]
