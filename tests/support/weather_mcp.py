"""A Model Context Protocol server (stdio, JSON-RPC 2.0, no dependencies) with one tool,
`get_weather(city)`: the tool the scripted tiny Qwen3 calls whenever tools are offered. A
coding agent given this server has a real tool to run, so its tool round trip through Trạm
carries a real result: WEATHER_ANSWER, which the test then finds in the agent's next request.

Run as a script: `python weather_mcp.py [CALLS_FILE]`; each call's arguments are appended to
CALLS_FILE (one JSON line) when given."""

from __future__ import annotations

import json
import sys
from typing import Any

__all__ = ["WEATHER_ANSWER", "WEATHER_TOOL", "handle"]

WEATHER_ANSWER = "Hanoi: 31 °C, sunny (from the weather MCP server)"
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The current weather in a city.",
    "inputSchema": {"type": "object", "properties": {"city": {"type": "string"}},
                    "required": ["city"]},
}


def handle(message: dict[str, Any], calls: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The answer to one JSON-RPC message (None for a notification)."""
    method, ident = message.get("method"), message.get("id")
    if ident is None:
        return None
    result: dict[str, Any]
    if method == "initialize":
        version = (message.get("params") or {}).get("protocolVersion") or "2025-06-18"
        result = {"protocolVersion": version, "capabilities": {"tools": {}},
                  "serverInfo": {"name": "weather", "version": "1.0.0"}}
    elif method == "tools/list":
        result = {"tools": [WEATHER_TOOL]}
    elif method == "tools/call":
        params = message.get("params") or {}
        calls.append(params.get("arguments") or {})
        result = {"content": [{"type": "text", "text": WEATHER_ANSWER}], "isError": False}
    elif method == "ping":
        result = {}
    else:
        return {"jsonrpc": "2.0", "id": ident,
                "error": {"code": -32601, "message": f"no method {method}"}}
    return {"jsonrpc": "2.0", "id": ident, "result": result}


def main(argv: list[str]) -> int:
    log = argv[1] if len(argv) > 1 else None
    for line in sys.stdin:
        if not line.strip():
            continue
        calls: list[dict[str, Any]] = []
        answer = handle(json.loads(line), calls)
        if log and calls:
            with open(log, "a", encoding="utf-8") as out:
                out.writelines(json.dumps(call) + "\n" for call in calls)
        if answer is not None:
            sys.stdout.write(json.dumps(answer) + "\n")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
