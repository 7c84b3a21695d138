"""The docs cannot rot: every fenced block of every guide in docs/ is checked against the real
embedded `tram up` (SmolLM2 on llama.cpp). bash blocks are run (curl fails on any HTTP error),
python blocks are run with the `openai` client, yaml blocks are parsed as tram.yaml, json
and toml blocks parsed (errors checked against the error schema). A block whose info string says
`norun (why)` needs what CI has not (a GPU, Docker, a cluster) and is only listed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import orjson
import pytest
import yaml

from tests.conftest import MASTER_KEY
from tests.support.tram_up import TramUp
from tram.config import parse_config
from tram.protocol.answers import ErrorResponse

DOCS = Path(__file__).resolve().parents[1] / "docs"
GUIDES = sorted(p for p in DOCS.glob("*.md") if p.name != "decisions.md")
FENCE = re.compile(r"^```(\S*)([^\n]*)\n(.*?)^```$", re.M | re.S)
SHOWN_ONLY = {"nginx"}  # configuration of other programs, shown as an example
# curl as a careful script uses it: any HTTP error fails the block.
PRELUDE = 'curl() { command curl --fail-with-body -sS "$@"; }\n'
MINIMUM_RUN = {"api-guide.en.md": 7, "api-guide.vi.md": 7, "operator-guide.md": 6,
               "operator-guide.vi.md": 6, "huong-dan.vi.md": 2, "agents.md": 7,
               "agents.vi.md": 7}
# A Vietnamese guide and the English one it translates: the same sections and the same blocks.
TRANSLATIONS = [("operator-guide.md", "operator-guide.vi.md"), ("agents.md", "agents.vi.md")]


def blocks(path: Path) -> list[tuple[str, str, str]]:
    return [(m.group(1), m.group(2).strip(), m.group(3)) for m in FENCE.finditer(path.read_text())]


def test_every_guide_is_covered() -> None:
    assert {p.name for p in GUIDES} == set(MINIMUM_RUN)
    for path in GUIDES:
        for language, info, _ in blocks(path):
            assert language in {"bash", "python", "yaml", "json", "toml", *SHOWN_ONLY}, \
                (path, language)
            if "norun" in info:
                assert re.search(r"norun \(.+\)", info), f"{path.name}: say why a block cannot run"


@pytest.mark.engine
@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: p.name)
def test_the_guides_blocks_work_against_tram_up(guide: Path, embedded: TramUp,
                                                tmp_path: Path) -> None:
    data = embedded.cwd / "data"
    (tmp_path / "data").symlink_to(data)  # commands that name data/… find the running store
    env = {**os.environ, "TRAM_URL": embedded.url + "/v1", "TRAM_KEY": MASTER_KEY,
           "TRAM_DATA_DIR": str(data), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env = {k: v for k, v in env.items() if k not in ("TRAM_CONFIG", "TRAM_MASTER_KEY")}
    ran = 0
    for language, info, written in blocks(guide):
        if "norun" in info or language in SHOWN_ONLY:
            continue
        text = written.replace("http://127.0.0.1:4000", embedded.url)
        where = f"{guide.name}, a {language} block:\n{text}"
        if language == "bash":
            done = subprocess.run(["bash", "-euo", "pipefail", "-c", PRELUDE + text], cwd=tmp_path,
                                  check=False, env=env, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, f"{where}\n{done.stdout}\n{done.stderr}"
        elif language == "python":
            done = subprocess.run([sys.executable, "-c", text], check=False, cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, f"{where}\n{done.stdout}\n{done.stderr}"
            assert done.stdout.strip(), where  # it printed the model's answers
        elif language == "yaml":
            parse_config(yaml.safe_load(text), where, {})
        elif language == "json":
            value = orjson.loads(text)
            if "error" in value:
                ErrorResponse.model_validate(value)
        elif language == "toml":  # a client's own config (Codex's config.toml)
            tomllib.loads(text)
        ran += 1
    assert ran >= MINIMUM_RUN[guide.name], f"{guide.name}: only {ran} blocks ran"


def _code(text: str) -> list[str]:
    """A block's lines without comments (`#` at a line's start or after a blank, outside
    quotes) and blank lines: what a translation keeps identical."""
    lines = []
    for line in text.splitlines():
        quote, cut = "", len(line)
        for i, char in enumerate(line):
            if quote:
                quote = "" if char == quote else quote
            elif char in "\"'":
                quote = char
            elif char == "#" and (i == 0 or line[i - 1].isspace()):
                cut = i
                break
        if line[:cut].strip():
            lines.append(line[:cut].rstrip())
    return lines


def _outline(path: Path) -> tuple[list[tuple[int, str]], list[tuple[str, bool, list[str]]], int]:
    """Headings (level, section number), blocks (language, norun, code) and table rows."""
    text = path.read_text()
    prose = FENCE.sub("", text)
    headings = [(len(m.group(1)), m.group(2) or "")
                for m in re.finditer(r"^(#{1,6}) (\d+\.)?", prose, re.M)]
    shape = [(language, "norun" in info, _code(code)) for language, info, code in blocks(path)]
    rows = len(re.findall(r"^\|", prose, re.M))
    return headings, shape, rows


@pytest.mark.parametrize(("english", "vietnamese"), TRANSLATIONS, ids=lambda name: name)
def test_the_vietnamese_guide_is_the_whole_english_one(english: str, vietnamese: str) -> None:
    en, vi = DOCS / english, DOCS / vietnamese
    en_headings, en_blocks, en_rows = _outline(en)
    vi_headings, vi_blocks, vi_rows = _outline(vi)
    assert vi_headings == en_headings  # every section and subsection, in the same order
    assert vi_rows == en_rows  # every table row (the troubleshooting table included)
    assert len(vi_blocks) == len(en_blocks)
    for index, (en_block, vi_block) in enumerate(zip(en_blocks, vi_blocks, strict=True)):
        assert vi_block == en_block, f"block {index}: the same commands, comments translated"
    # Translated, not summarised: the prose is about as long (Vietnamese runs longer).
    en_prose, vi_prose = (len(FENCE.sub("", p.read_text())) for p in (en, vi))
    assert vi_prose >= 0.9 * en_prose, (vi_prose, en_prose)


def test_the_outline_check_bites(tmp_path: Path) -> None:
    english = DOCS / TRANSLATIONS[0][0]
    short = tmp_path / "short.md"
    text = english.read_text()
    short.write_text(text[:text.index("## 6.")])
    assert _outline(short)[0] != _outline(english)[0]
    changed = tmp_path / "changed.md"
    changed.write_text(text.replace("tram keys list", "tram keys list --all"))
    assert _outline(changed)[1] != _outline(english)[1]
    assert _code('a: "#x"  # note\n# only a comment\nb: 1 # c') == ['a: "#x"', "b: 1"]
