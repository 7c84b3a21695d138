"""Turning a pydantic validation error into one clear OpenAI-style 400."""

from __future__ import annotations

from pydantic import ValidationError

from tram.errors import InvalidRequest

__all__ = ["invalid_request_from"]


def _param(loc: tuple[int | str, ...]) -> str:
    """`messages[0].content[1].image_url.url` from pydantic's location tuple.

    Request fields are lower-case identifiers; pydantic also puts the names of union branches
    in the location ('str', 'list[...]', 'TextPart', 'function-after[...]'), which are skipped.
    """
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier() and part.islower() and part not in _BRANCH_NAMES:
            out += f".{part}" if out else part
    return out


_BRANCH_NAMES = frozenset({"str", "int", "float", "bool", "none", "list", "dict"})


def invalid_request_from(exc: ValidationError) -> InvalidRequest:
    errors = exc.errors(include_url=False)
    # Prefer the error of the branch that got furthest into a value (most specific location).
    first = max(errors, key=lambda e: (e["type"] == "missing", len(e["loc"])))
    param = _param(tuple(first["loc"]))
    if first["type"] == "missing":
        return InvalidRequest(f"Missing required parameter: '{param}'.", param=param,
                              code="missing_required_parameter")
    message = str(first["msg"]).removeprefix("Value error, ")
    code = "invalid_type" if first["type"].endswith("_type") else "invalid_value"
    return InvalidRequest(f"Invalid value for '{param}': {message}.", param=param, code=code)
