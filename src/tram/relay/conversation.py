"""One `/v1/responses` request's state: its id, the stored conversation it continues, and
storing its answer (see `store/stored_responses.py`).

Engines are sent the whole conversation (`previous_response_id` expanded into input items,
`store: false`), so any replica of any engine can answer a continued conversation, after any
restart, whichever gateway process takes it. The gateway names the response itself
(`resp_…`), so ids never collide across replicas.

What a turn may cost is bounded twice. A continuation brings back at most
`responses.max_expanded_bytes` of earlier turns (measured as the JSON sent, read newest first
and stopped as soon as it is over: a 400 naming the limit, before the engine is called). A
stored turn must fit the key's store (`responses.max_bytes_per_key`): an input that alone is
larger is a 400 before the engine is called (send it with `store: false`); an answer that
makes the turn larger is answered but not stored, and says so (`store: false`).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from typing import Any

import orjson

from tram.config import ResponsesConfig
from tram.errors import InvalidRequest, NotFound
from tram.protocol.routes import ResponsesRequest
from tram.store.stored_responses import ResponseStore

__all__ = ["ResponsesTurn", "input_items", "new_id"]

logger = logging.getLogger("tram.responses")

_FINAL = ("completed", "incomplete")


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"


def input_items(value: Any) -> list[Any]:
    """`input` as a list of items (a string is one user message)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    return list(value)


def _as_input(output: Any) -> list[Any]:
    """A stored answer's output items, as the next turn's input: messages and tool calls.
    Reasoning items are left out: engines differ in taking them back, and Qwen3's template
    drops earlier turns' reasoning anyway."""
    if not isinstance(output, list):
        return []
    return [item for item in output
            if isinstance(item, dict) and item.get("type") in ("message", "function_call")]


class ResponsesTurn:
    def __init__(self, store: ResponseStore, config: ResponsesConfig, owner: str,
                 alias: str, request: ResponsesRequest, payload: dict[str, Any]) -> None:
        self.id = new_id("resp")
        self._store = store
        self._config = config
        self._owner = owner
        self._alias = alias
        self.previous_id = request.previous_response_id
        self.stored = request.store if request.store is not None else config.store_default
        self.own_input = input_items(payload.get("input"))
        self.request = payload
        self._input_json: bytes | None = None  # this turn's input as stored
        self._answer_json: bytes | None = None  # the final answer as stored, once sized
        self._sized = False

    async def expand(self, payload: dict[str, Any]) -> None:
        """Put the stored conversation in front of this turn's input; the engine stores
        nothing."""
        history = await self._history() if self.previous_id is not None else []
        if not history and not self.own_input:
            raise InvalidRequest("Missing required parameter: 'input'.", param="input",
                                 code="missing_required_parameter")
        if self.stored:
            self._input_json = orjson.dumps(self.own_input)
            if not self._store.fits(len(self._input_json)):
                raise InvalidRequest(
                    f"This turn's input is {len(self._input_json)} bytes, more than a key may "
                    f"keep stored (responses.max_bytes_per_key: "
                    f"{self._config.max_bytes_per_key} bytes); send it with store: false.",
                    param="input", code="store_limit_exceeded")
        payload["input"] = history + self.own_input
        payload.pop("previous_response_id", None)
        payload["store"] = False

    async def _history(self) -> list[Any]:
        """The earlier turns' items, oldest first, within `max_expanded_bytes`."""
        assert self.previous_id is not None
        limit = self._config.max_expanded_bytes
        turns: list[list[Any]] = []
        size = 0
        chain = self._store.chain(self._owner, self.previous_id)
        async with contextlib.aclosing(chain) as newest_first:
            async for turn in newest_first:
                items = turn.input_items + _as_input(turn.response.get("output"))
                size += len(orjson.dumps(items))
                if size > limit:
                    raise InvalidRequest(
                        f"The conversation before this turn is more than this gateway sends "
                        f"back to an engine (responses.max_expanded_bytes: {limit} bytes). "
                        "Start a new conversation, or send the turns you need as input.",
                        param="previous_response_id", code="conversation_too_large")
                turns.append(items)
        if not turns:
            raise NotFound(f"Previous response with id '{self.previous_id}' not found.",
                           param="previous_response_id")
        return [item for items in reversed(turns) for item in items]

    def rewrite(self, response: dict[str, Any]) -> None:
        """The engine's (or the bridge's) response object, as this gateway answers it. The
        final one is sized here, before it is sent: a turn the key's store cannot hold says
        `store: false`."""
        response["id"] = self.id
        response["model"] = self._alias
        response["previous_response_id"] = self.previous_id
        response["store"] = self.stored
        if self.stored and not self._sized and response.get("status") in _FINAL:
            self._sized = True
            answer = orjson.dumps(response)
            size = len(self._input_json or b"") + len(answer)
            if self._store.fits(size):
                self._answer_json = answer
            else:
                self.stored = response["store"] = False
                logger.warning("responses: %s answered but not stored: %d bytes, over the "
                               "per-key cap of %d", self.id, size,
                               self._config.max_bytes_per_key)

    async def finish(self, response: dict[str, Any]) -> None:
        """Store the answer (before the client sees it, so its id can be continued at once)."""
        self.rewrite(response)
        if self.stored and response.get("status") in _FINAL:
            await self._store.save(self._owner, self._alias, self.previous_id, self.own_input,
                                   response, input_json=self._input_json,
                                   answer_json=self._answer_json)
