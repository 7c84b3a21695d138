"""Admin API bodies for virtual keys.

Types are strict (`rpm: true` or `admin: "yes"` is a 400, as OpenAI answers), every number fits
the column that stores it (rpm, tpm and max_concurrency are 32-bit INTEGER, the budgets 64-bit
BIGINT in PostgreSQL), text has no control characters, and an expiry must convert to UTC: a
value the store cannot hold is a 400 naming the field, never a 500 from the database.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
)

__all__ = ["KeyCreate", "KeyUpdate", "Period"]

Period = Literal["day", "week", "month"]  # a budget renews at its start (UTC)

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
PRIORITY_MAX = 10**9  # fits the text column (16 characters) with its sign


def _no_control_characters(value: str) -> str:
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError("must not contain control characters")
    return value


def _in_utc_range(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is not None:
        try:
            value.astimezone(dt.UTC)
        except OverflowError:
            raise ValueError("is out of range once converted to UTC") from None
    return value


Text = Annotated[StrictStr, AfterValidator(_no_control_characters)]
Count32 = Annotated[StrictInt, Field(ge=1, le=INT32_MAX)]
Count64 = Annotated[StrictInt, Field(ge=1, le=INT64_MAX)]
Expiry = Annotated[dt.datetime, AfterValidator(_in_utc_range)]


class KeyUpdate(BaseModel):
    """PATCH /admin/keys/{id}: every field optional; only the fields sent change. `null`
    removes a limit, the model list (every model), the owner or the expiry."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[Text, Field(min_length=1, max_length=200)] | None = None
    owner: Annotated[Text, Field(max_length=200)] | None = None
    models: list[Annotated[Text, Field(min_length=1, max_length=200)]] | None = None
    expires_at: Expiry | None = None
    rpm: Count32 | None = None
    tpm: Count32 | None = None
    max_concurrency: Count32 | None = None
    max_total_tokens: Count64 | None = None
    budget_tokens: Count64 | None = None  # per budget_period (default: month)
    budget_period: Period | None = None
    admin: StrictBool | None = None  # may use the admin API (only the master key may grant it)
    # The fair queue (tram.yaml `sharing`): its class, or a priority number (lower first, as
    # vLLM reads it; from the batch class's number up it queues as batch); its share within
    # its class (null: the class's weight in tram.yaml).
    priority: Literal["interactive", "batch"] | Annotated[
        StrictInt, Field(ge=-PRIORITY_MAX, le=PRIORITY_MAX)] | None = None
    weight: Annotated[StrictFloat | StrictInt, Field(gt=0, le=1_000_000)] | None = None

    @field_validator("name")
    @classmethod
    def _name_is_never_null(cls, value: str | None) -> str | None:
        # Runs only when a name is sent (defaults are not validated): `"name": null` is a 400.
        if value is None:
            raise ValueError("cannot be null; every key has a name")
        return value


class KeyCreate(KeyUpdate):
    """POST /admin/keys: the same fields, with a name required (it keeps its place first)."""

    name: Annotated[Text, Field(min_length=1, max_length=200)]
