"""What every part of the configuration shares: the error an operator sees, and the strict
base of every tram.yaml section (unknown keys are refused, values are frozen)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from tram.errors import ConfigError

__all__ = ["ConfigError", "Strict"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
