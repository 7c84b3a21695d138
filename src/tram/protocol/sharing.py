"""GET /admin/sharing: each model's fair queue live (src/tram/sharing/) and the settings it
runs with, as the console's Sharing panel shows them. A schema for the OpenAPI document; the
fuzzer checks live answers against it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["SharingKey", "SharingModel", "SharingQueueSettings", "SharingStatus"]

QueueClass = Literal["interactive", "batch"]


class SharingKey(BaseModel):
    """A key contending for the model: started recently while the model was bounded or
    saturated, or waiting now."""

    model_config = ConfigDict(populate_by_name=True)

    id: str
    name: str | None  # the key's name; null when its record is gone
    cls: QueueClass = Field(alias="class")  # the class of its requests, as last seen
    weight: float  # its share within its class, as last seen
    share: float  # of what the model started recently (estimated tokens, decayed over a minute)
    waiting: int  # its requests waiting now


class SharingModel(BaseModel):
    id: str
    # How many requests the model's engines take at once now: its max_in_flight, or what was
    # started when every engine reported requests waiting; null: unbounded.
    capacity: int | None
    bounded_by: Literal["max_in_flight", "engine_queue"] | None
    in_flight: int  # requests the queue started that hold an engine now
    waiting: dict[QueueClass, int]  # requests waiting now, by class
    admitted: int  # requests started after waiting, since the gateway started
    keys: list[SharingKey]


class SharingQueueSettings(BaseModel):
    """tram.yaml's `sharing.queue`."""

    enabled: bool
    engine_signal: bool
    max_queue: int
    max_per_key: int
    max_wait_seconds: dict[str, float]
    weights: dict[str, float]  # a key's weight when it sets none, by class
    class_share: dict[str, float]  # the most of a bounded model's slots a class may hold
    class_prompts: dict[str, int]  # a class's requests computing their prompt at once, at most
    key_prompts: int | None  # one key's, while another key shares the model (None: no bound)
    prompt_tokens_per_second: float  # the engines' prompt speed the pacing assumes


class SharingStatus(BaseModel):
    object: Literal["sharing"]
    priorities: dict[str, int]  # each class's priority number (lower runs first)
    queue: SharingQueueSettings
    data: list[SharingModel]
