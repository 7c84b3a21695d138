"""The coding agents' CLIs are installed as locked: exact versions in tests/agents/package.json,
every package of package-lock.json with its integrity hash, node_modules exactly the lock
(npm ci), the set-up's stamp current, and each CLI reporting the pinned version."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

from tests.support.agents import AGENTS, BIN, require_agents

PINNED = {"@openai/codex": ("codex", r"codex-cli (\S+)"),
          "@anthropic-ai/claude-code": ("claude", r"^(\S+) \(Claude Code\)"),
          "@qwen-code/qwen-code": ("qwen", r"^(\S+)$")}


def _lock() -> dict[str, dict[str, object]]:
    lock = json.loads((AGENTS / "package-lock.json").read_text())
    assert lock["lockfileVersion"] == 3
    packages: dict[str, dict[str, object]] = lock["packages"]
    return packages


def test_versions_are_exact_and_every_package_has_its_hash() -> None:
    manifest = json.loads((AGENTS / "package.json").read_text())
    assert set(manifest["dependencies"]) == set(PINNED)
    assert all(re.fullmatch(r"\d+\.\d+\.\d+", v) for v in manifest["dependencies"].values())
    packages = _lock()
    assert packages[""]["dependencies"] == manifest["dependencies"]
    for name, entry in packages.items():
        if name:
            assert str(entry.get("integrity", "")).startswith("sha512-"), name
    for name, version in manifest["dependencies"].items():
        assert packages[f"node_modules/{name}"]["version"] == version


def test_node_modules_is_the_lock_and_each_cli_says_its_version(tmp_path: Path) -> None:
    require_agents()
    packages = _lock()
    installed = json.loads((AGENTS / "node_modules" / ".package-lock.json").read_text())
    for name, entry in installed["packages"].items():
        assert name in packages and entry["version"] == packages[name]["version"], name
    stamp = hashlib.sha256((AGENTS / "package.json").read_bytes() +
                           (AGENTS / "package-lock.json").read_bytes()).hexdigest()
    assert (AGENTS / "node_modules" / ".tram-locked").read_text().strip() == stamp
    for name, (command, pattern) in PINNED.items():
        out = subprocess.run([str(BIN / command), "--version"], capture_output=True, text=True,
                             timeout=60, check=False, env={"PATH": "/usr/bin:/bin",
                                                           "HOME": str(tmp_path)}).stdout
        found = re.search(pattern, out.strip(), re.M)
        assert found and found.group(1) == packages[f"node_modules/{name}"]["version"], out
