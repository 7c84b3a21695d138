"""The docs cannot rot: every fenced block of every guide in docs/ is checked against the real
embedded `tram up` (SmolLM2 on llama.cpp). bash blocks are run (curl fails on any HTTP error),
python blocks are run with the `openai` client, yaml blocks are parsed as tram.yaml, json
blocks parsed (errors checked against the error schema). A block whose info string says
`norun (why)` needs what CI has not (a GPU, Docker, a cluster) and is only listed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
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
MINIMUM_RUN = {"api-guide.en.md": 7, "api-guide.vi.md": 7, "operator-guide.md": 4,
               "operator-guide.vi.md": 4, "huong-dan.vi.md": 2}


def blocks(path: Path) -> list[tuple[str, str, str]]:
    return [(m.group(1), m.group(2).strip(), m.group(3)) for m in FENCE.finditer(path.read_text())]


def test_every_guide_is_covered() -> None:
    assert {p.name for p in GUIDES} == set(MINIMUM_RUN)
    for path in GUIDES:
        for language, info, _ in blocks(path):
            assert language in {"bash", "python", "yaml", "json", *SHOWN_ONLY}, (path, language)
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
        ran += 1
    assert ran >= MINIMUM_RUN[guide.name], f"{guide.name}: only {ran} blocks ran"
