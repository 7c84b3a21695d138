"""Run the coding agents' CLIs (Codex CLI, Claude Code, Qwen Code, installed by
scripts/setup.sh from tests/agents/package-lock.json) against a gateway on loopback, set up by
`tram clients --write`, in a home of their own, with every way out of the machine closed:
each client's telemetry and update checks off by its documented switch, and HTTP(S)_PROXY
pointed at a trap that records any connection a client tries to make elsewhere."""

from __future__ import annotations

import os
import signal
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

__all__ = ["AGENTS", "BIN", "AgentRun", "Trap", "agent_env", "require_agents", "run_agent",
           "trap_proxy", "write_setup"]

AGENTS = Path(__file__).resolve().parents[1] / "agents"
BIN = AGENTS / "node_modules" / ".bin"
COMMANDS = {"codex": ["codex", "exec", "--skip-git-repo-check"], "claude": ["claude", "-p"],
            "qwen": ["qwen", "-p"]}
# Inherited settings that would point a client elsewhere or change what it sends.
_FOREIGN = ("OPENAI_", "ANTHROPIC_", "CODEX_", "CLAUDE_", "QWEN_", "GEMINI_", "TRAM_",
            "LITELLM_", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


def require_agents() -> Path:
    """The CLIs' folder; a skip where they are not installed (never in CI, where
    TRAM_REQUIRE_AGENTS is set: scripts/setup.sh installs them)."""
    if not all((BIN / name).exists() for name in COMMANDS):
        message = "the coding agents' CLIs are not installed: bash scripts/setup.sh " \
                  "(npm ci in tests/agents)"
        if os.environ.get("TRAM_REQUIRE_AGENTS"):
            pytest.fail(message)
        pytest.skip(message)
    return BIN


@dataclass
class Trap:
    """What clients tried to reach through the proxy: CONNECT host:port or a request line."""

    url: str
    attempts: list[str] = field(default_factory=list)


@contextmanager
def trap_proxy() -> Iterator[Trap]:
    """An HTTP proxy on loopback that forwards nothing: it records each first line and
    closes the connection, so a client that tries the internet fails at once, on record."""
    trap = Trap("")

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.settimeout(5)
            try:
                line = self.request.recv(4096).split(b"\r\n", 1)[0]
            except OSError:
                return
            trap.attempts.append(line.decode(errors="replace"))
            self.request.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    trap.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield trap
    finally:
        server.shutdown()
        server.server_close()


def write_setup(folder: Path, url: str, *extra: str) -> Path:
    """`tram clients --write FOLDER --url URL …` (the real command), returning FOLDER."""
    done = subprocess.run([sys.executable, "-m", "tram", "clients", "--url", url, "--lang", "en",
                           "--write", str(folder), *extra], capture_output=True, text=True,
                          timeout=60, check=False,
                          env={k: v for k, v in os.environ.items() if not k.startswith("TRAM_")})
    assert done.returncode == 0, done.stderr
    return folder


def agent_env(home: Path, setup: Path, key: str, trap: Trap, **extra: str) -> dict[str, str]:
    """The environment of a CLI run: its own home, the set-up folder, the key, the trap."""
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(_FOREIGN)}
    env.update({
        "HOME": str(home), "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        "TRAM_API_KEY": key,
        "CODEX_HOME": str(setup / "codex"), "CLAUDE_CONFIG_DIR": str(setup / "claude"),
        "QWEN_HOME": str(setup / "qwen"),
        # Anything not for the gateway goes to the trap (the gateway is on loopback).
        "HTTP_PROXY": trap.url, "HTTPS_PROXY": trap.url, "ALL_PROXY": trap.url,
        "http_proxy": trap.url, "https_proxy": trap.url, "all_proxy": trap.url,
        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
        # Each client's documented switches, besides what the set-up files say.
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1", "DISABLE_ERROR_REPORTING": "1",
        "QWEN_TELEMETRY_ENABLED": "false", "QWEN_USAGE_STATISTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1", "NO_UPDATE_NOTIFIER": "1", "NO_COLOR": "1",
        **extra,
    })
    return env


@dataclass
class AgentRun:
    returncode: int
    output: str  # stdout and stderr together


def run_agent(name: str, prompt: str, env: dict[str, str], cwd: Path,
              timeout: float) -> AgentRun:
    """One non-interactive run (`codex exec`, `claude -p`, `qwen -p`) in a process group of
    its own (codex.js starts the native binary as a child): on timeout the whole group is
    killed and the run reports returncode 124 with what it printed so far."""
    argv = [str(BIN / COMMANDS[name][0]), *COMMANDS[name][1:], prompt]
    cwd.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        out, _ = process.communicate(timeout=timeout)
        return AgentRun(process.returncode, out)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, _ = process.communicate()
        return AgentRun(124, out)
