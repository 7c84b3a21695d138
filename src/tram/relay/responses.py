"""One `/v1/responses` request's state: its id, the stored conversation it continues, and
storing its answer (see `store/responses.py`).

Engines are sent the whole conversation (`previous_response_id` expanded into input items,
`store: false`), so any replica of any engine can answer a continued conversation, after any
restart, whichever gateway process takes it. The gateway names the response itself
(`resp_…`), so ids never collide across replicas.
"""

from __future__ import annotations

import secrets
from typing import Any

from tram.config import ResponsesConfig
from tram.errors import InvalidRequest, NotFound
from tram.protocol.routes import ResponsesRequest
from tram.store.responses import ResponseStore

__all__ = ["ResponsesTurn", "input_items", "new_id"]


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
        self._owner = owner
        self._alias = alias
        self.previous_id = request.previous_response_id
        self.stored = request.store if request.store is not None else config.store_default
        self.own_input = input_items(payload.get("input"))
        self.request = payload

    async def expand(self, payload: dict[str, Any]) -> None:
        """Put the stored conversation in front of this turn's input; the engine stores
        nothing."""
        history: list[Any] = []
        if self.previous_id is not None:
            turns = await self._store.conversation(self._owner, self.previous_id)
            if turns is None:
                raise NotFound(f"Previous response with id '{self.previous_id}' not found.",
                               param="previous_response_id")
            for turn in turns:
                history += turn.input_items
                history += _as_input(turn.response.get("output"))
        if not history and not self.own_input:
            raise InvalidRequest("Missing required parameter: 'input'.", param="input",
                                 code="missing_required_parameter")
        payload["input"] = history + self.own_input
        payload.pop("previous_response_id", None)
        payload["store"] = False

    def rewrite(self, response: dict[str, Any]) -> None:
        """The engine's (or the bridge's) response object, as this gateway answers it."""
        response["id"] = self.id
        response["model"] = self._alias
        response["previous_response_id"] = self.previous_id
        response["store"] = self.stored

    async def finish(self, response: dict[str, Any]) -> None:
        """Store the answer (before the client sees it, so its id can be continued at once)."""
        self.rewrite(response)
        if self.stored and response.get("status") in ("completed", "incomplete"):
            await self._store.save(self._owner, self._alias, self.previous_id, self.own_input,
                                   response)
