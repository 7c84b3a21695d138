"""Admin API bodies for virtual keys."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field

from tram.limits.base import Period

__all__ = ["KeyCreate", "KeyUpdate"]


class KeyUpdate(BaseModel):
    """PATCH /admin/keys/{id}: every field optional; only the fields sent change."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    owner: str | None = Field(None, max_length=200)
    models: list[str] | None = None  # None: every model
    expires_at: dt.datetime | None = None
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)
    max_concurrency: int | None = Field(None, ge=1)
    max_total_tokens: int | None = Field(None, ge=1)
    budget_tokens: int | None = Field(None, ge=1)  # per budget_period (default: month)
    budget_period: Period | None = None
    admin: bool | None = None  # may use the admin API (only the master key may grant it)


class KeyCreate(KeyUpdate):
    """POST /admin/keys: the same fields, with a name required (it keeps its place first)."""

    name: str = Field(min_length=1, max_length=200)
