"""The Responses API's tools for an engine that takes function tools only (every chat engine),
and the calls mapped back to what the client offered.

- `function` tools pass as chat function tools.
- A `namespace` tool groups function tools (Codex offers an MCP server's tools so); each is
  offered to the engine as `<namespace>__<name>`, vLLM's own flattening, and a call to it comes
  back as a `function_call` item with `name` and `namespace` set, which is what Codex needs to
  run it. A call to a namespaced function by its bare name (unique, not shadowed by a top-level
  function) is given its namespace too: engines answer either way.
- Tools the gateway cannot run (the hosted `web_search`, `file_search`, `code_interpreter`,
  `image_generation`, `local_shell`, computer use, remote `mcp` …): the model's `builtin_tools`
  policy ignores them (the default: left out, and said so in an `x-tram-ignored-tools` header
  and the log) or refuses the request with a 400 naming the tool.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tram.errors import InvalidRequest

__all__ = ["SEPARATOR", "ToolMap", "tool_map"]

SEPARATOR = "__"  # vLLM's flattening of a namespace's functions


def _refused(kind: str, param: str, why: str) -> InvalidRequest:
    return InvalidRequest(f"Tools of type '{kind}' are not supported here: {why}", param=param,
                          code="unsupported_tool")


def _function(tool: dict[str, Any], name: str) -> dict[str, Any]:
    function = {key: tool[key] for key in ("description", "parameters", "strict") if key in tool}
    return {"type": "function", "function": {"name": name, **function}}


@dataclass
class ToolMap:
    """The chat tools for a Responses request's tools, and how each call maps back."""

    chat_tools: list[dict[str, Any]] = field(default_factory=list)
    namespaced: dict[str, tuple[str, str]] = field(default_factory=dict)  # flat → (name, ns)
    bare: dict[str, str] = field(default_factory=dict)  # a namespaced function's name → ns
    ignored: list[str] = field(default_factory=list)  # the built-in tools left out

    def call(self, chat_name: str) -> tuple[str, str | None]:
        """(name, namespace) of a call the engine made by this name."""
        if chat_name in self.namespaced:
            return self.namespaced[chat_name]
        return chat_name, self.bare.get(chat_name)

    def annotate(self, item: Any) -> None:
        """A `function_call` output item, with the name and namespace the client offered."""
        if not isinstance(item, dict) or item.get("type") != "function_call" \
                or not isinstance(item.get("name"), str) or item.get("namespace"):
            return
        name, namespace = self.call(item["name"])
        if namespace is not None:
            item["name"], item["namespace"] = name, namespace

    def needed(self) -> bool:
        return bool(self.namespaced)


def _add_namespace(tools: ToolMap, tool: dict[str, Any], param: str,
                   top_level: set[str]) -> None:
    namespace = tool.get("name")
    if not isinstance(namespace, str) or not namespace:
        raise InvalidRequest("A namespace tool needs a name.", param=f"{param}.name")
    for j, inner in enumerate(tool.get("tools") or ()):
        if not isinstance(inner, dict) or inner.get("type") != "function":
            continue  # custom tools inside a namespace are not offered (vLLM's rule too)
        name = inner.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequest("A function tool needs a name.", param=f"{param}.tools[{j}]")
        flat = f"{namespace}{SEPARATOR}{name}"
        tools.chat_tools.append(_function(inner, flat))
        tools.namespaced[flat] = (name, namespace)
        if name in tools.bare or name in top_level:
            tools.bare[name] = ""  # ambiguous: no namespace is guessed for it
        else:
            tools.bare[name] = namespace


def tool_map(tools: Any, policy: str = "ignore") -> ToolMap:
    """The chat tools for `tools`; `policy` is the model's `builtin_tools` ("ignore" or
    "refuse"). A 400 naming the tool for a malformed one or one refused."""
    mapped = ToolMap()
    top_level = {str(tool.get("name")) for tool in tools or () if isinstance(tool, dict)
                 and tool.get("type") == "function"}
    for i, tool in enumerate(tools or ()):
        param = f"tools[{i}]"
        kind = tool.get("type") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or not isinstance(kind, str):
            raise InvalidRequest("Each tool is an object with a type.", param=param,
                                 code="invalid_type")
        if kind == "function":
            if not isinstance(tool.get("name"), str) or not tool["name"]:
                raise InvalidRequest("A function tool needs a name.", param=f"{param}.name")
            mapped.chat_tools.append(_function(tool, tool["name"]))
        elif kind == "namespace":
            _add_namespace(mapped, tool, param, top_level)
        elif policy == "refuse":
            raise _refused(kind, param, "this model runs function tools only (its "
                           "builtin_tools policy is refuse).")
        else:
            mapped.ignored.append(kind)
    mapped.bare = {name: ns for name, ns in mapped.bare.items() if ns}
    return mapped
