"""Compare an environment with lock files, and make it match (standard library only).

    python scripts/locked.py check LOCK... [--also NAME...]   exit 1 and list every difference
    python scripts/locked.py prune LOCK... [--also NAME...]   uninstall what no lock names

Run it with the environment's own interpreter. A lock file is pip's requirements format with
`name==version` pins (what `uv pip compile` writes); `--also` names distributions installed
outside the locks on purpose (the project itself, installed editable). pip is the installer
and is not compared.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
_NOT_COMPARED = {"pip"}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(paths: list[Path]) -> dict[str, str]:
    pins: dict[str, str] = {}
    for path in paths:
        for line in path.read_text().splitlines():
            match = _PIN.match(line)
            if match:
                pins[normalise(match.group(1))] = match.group(2)
    return pins


def installed() -> dict[str, str]:
    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found[normalise(name)] = dist.version
    return found


def differences(pins: dict[str, str], have: dict[str, str], also: set[str]) -> list[str]:
    lines = []
    for name, version in sorted(pins.items()):
        if name not in have:
            lines.append(f"missing: {name}=={version}")
        elif have[name] != version:
            lines.append(f"wrong version: {name} {have[name]} (lock: {version})")
    for name in sorted(set(have) - set(pins) - also - _NOT_COMPARED):
        lines.append(f"not in any lock: {name}=={have[name]}")
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["check", "prune"])
    parser.add_argument("locks", nargs="+", type=Path)
    parser.add_argument("--also", nargs="*", default=[])
    args = parser.parse_args(argv)
    pins, have = locked(args.locks), installed()
    also = {normalise(name) for name in args.also}
    if args.action == "prune":
        extra = sorted(set(have) - set(pins) - also - _NOT_COMPARED)
        if extra:
            subprocess.run([sys.executable, "-m", "pip", "uninstall", "--yes", "--quiet", *extra],
                           check=True)
        return 0
    problems = differences(pins, have, also)
    for line in problems:
        print(line)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
