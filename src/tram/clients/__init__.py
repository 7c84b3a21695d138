"""Set-ups of the coding agents (Codex CLI, Claude Code, Qwen Code, opencode) and Open WebUI
for a Trạm gateway: `tram clients` (docs/agents.md)."""

from tram.clients.setups import CLIENTS, ClientSetup, SetupFile, build_setups
from tram.clients.target import Target, resolve_target

__all__ = ["CLIENTS", "ClientSetup", "SetupFile", "Target", "build_setups", "resolve_target"]
