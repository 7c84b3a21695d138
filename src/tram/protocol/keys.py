"""Admin API bodies for virtual keys."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["KeyCreate", "KeyUpdate"]


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    owner: str | None = Field(None, max_length=200)
    models: list[str] | None = None  # None: every model
    expires_at: dt.datetime | None = None
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)
    max_concurrency: int | None = Field(None, ge=1)
    max_total_tokens: int | None = Field(None, ge=1)
    budget_tokens: int | None = Field(None, ge=1)  # per budget_period (default: month)
    budget_period: Literal["day", "week", "month"] | None = None
    admin: bool | None = None  # may use the admin API (only the master key may grant it)


class KeyUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    owner: str | None = Field(None, max_length=200)
    models: list[str] | None = None
    expires_at: dt.datetime | None = None
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)
    max_concurrency: int | None = Field(None, ge=1)
    max_total_tokens: int | None = Field(None, ge=1)
    budget_tokens: int | None = Field(None, ge=1)  # per budget_period (default: month)
    budget_period: Literal["day", "week", "month"] | None = None
    admin: bool | None = None  # may use the admin API (only the master key may grant it)
