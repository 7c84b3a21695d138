"""Reading tram.yaml: the YAML parsed, `${VAR}` and `${VAR:-default}` expanded from the
environment, the result validated; every problem is one `ConfigError` line naming the file, the
key and what is wrong."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from tram.config.base import ConfigError
from tram.config.schema import TramConfig
from tram.kinds import owners_of

__all__ = ["load_config", "parse_config", "read_yaml"]


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand(value: Any, env: Mapping[str, str], where: str, source: str) -> Any:
    """Expand ${VAR} and ${VAR:-default} in every string of the parsed YAML."""
    if isinstance(value, dict):
        return {k: _expand(v, env, f"{where}.{k}" if where else str(k), source) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, env, f"{where}[{i}]", source) for i, v in enumerate(value)]
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ConfigError(f"{source}: {where}: environment variable {name} is not set")

        return _VAR.sub(substitute, value)
    return value


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def parse_config(data: Any, source: str, env: Mapping[str, str] | None = None) -> TramConfig:
    """Validate parsed YAML; `source` names the file in error messages."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(data).__name__}")
    data = _expand(data, os.environ if env is None else env, "", source)
    try:
        return TramConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc, message = _engine_kind_error(tuple(first["loc"]), first["type"])
        if message is None:
            message = "unknown key" if first["type"] == "extra_forbidden" \
                else first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{source}: {_location(loc)}: {message}") from None


def _engine_kind_error(loc: tuple[int | str, ...], kind: str) -> tuple[tuple[int | str, ...],
                                                                        str | None]:
    """An error inside an `engine:` mapping names the key, not the kind's branch of the schema;
    a setting of another kind says which kind takes it."""
    if "engine" not in loc or loc.index("engine") + 1 >= len(loc):
        return loc, None
    at = loc.index("engine")
    branch = str(loc[at + 1])
    if branch not in {owner for name in ("model", "kind") for owner in owners_of(name)}:
        return loc, None
    rest = loc[at + 2:]
    if kind == "extra_forbidden" and len(rest) == 1:
        owners = owners_of(str(rest[0]))
        if owners:
            return loc[:at + 1], (f"{rest[0]} is a setting of kind {', '.join(owners)}, "
                                  f"not {branch}")
    return (*loc[:at + 1], *rest), None


def read_yaml(path: Path) -> Any:
    """The parsed YAML of a config file; any problem is a one-line ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: invalid YAML{at}: {problem}") from None
    return data


def load_config(path: Path, env: Mapping[str, str] | None = None) -> TramConfig:
    return parse_config(read_yaml(path), str(path), env)
