"""A key's fair-queue values refused where they come in: through the admin API (a 400 in
OpenAI's shape naming the field, the key unchanged) and through `tram keys` (a clear message,
a non-zero exit, nothing stored)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import MASTER_KEY
from tests.sharing.test_sharing_view import held_gateway
from tests.support.held_engine import HeldEngine
from tests.support.servers import clean_env, serve_app

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
BAD = [({"priority": "urgent"}, "priority"), ({"weight": 0}, "weight"),
       ({"weight": -1}, "weight"), ({"weight": "heavy"}, "weight"),
       ({"priority": 1.5}, "priority")]


def _refused(answer: httpx.Response, param: str) -> None:
    assert answer.status_code == 400, answer.text
    error: dict[str, Any] = answer.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param and param in error["message"]


def test_the_admin_api_refuses_bad_priorities_and_weights(tmp_path: Path) -> None:
    engine = HeldEngine()
    with serve_app(engine.app) as engine_url, held_gateway(tmp_path, engine_url) as url:
        for fields, param in BAD:
            _refused(httpx.post(url + "/admin/keys", headers=AUTH,
                                json={"name": "bad", **fields}), param)
        assert httpx.get(url + "/admin/keys", headers=AUTH).json()["data"] == []
        made = httpx.post(url + "/admin/keys", headers=AUTH,
                          json={"name": "good", "priority": "batch", "weight": 2}).json()
        for fields, param in BAD:
            _refused(httpx.patch(url + f"/admin/keys/{made['id']}", headers=AUTH,
                                 json=fields), param)
        kept = httpx.get(url + f"/admin/keys/{made['id']}", headers=AUTH).json()
        assert kept["priority"] == "batch" and kept["weight"] == 2


@pytest.fixture
def tram(tmp_path: Path) -> Any:
    env = clean_env(TRAM_MASTER_KEY=MASTER_KEY, TRAM_DATA_DIR=str(tmp_path / "data"))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tram", "keys", *args], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=60, check=False)
    return run


def test_tram_keys_refuses_bad_priorities_and_weights(tram: Any) -> None:
    for flags, param in [(["--priority", "urgent"], "priority"),
                         (["--weight", "-1"], "weight"), (["--priority", "1.5"], "priority")]:
        made = tram("create", "--name", "bad", *flags)
        assert made.returncode != 0 and made.stdout == ""
        assert made.stderr.startswith("tram: ") and param in made.stderr
        assert "Traceback" not in made.stderr
    weightless = tram("create", "--name", "bad", "--weight", "heavy")  # not a number at all
    assert weightless.returncode == 2 and "--weight" in weightless.stderr
    assert tram("list").stdout == ""  # nothing was stored

    assert tram("create", "--name", "good", "--priority", "batch").returncode == 0
    for flags, param in [(["--priority", "urgent"], "priority"), (["--weight", "-1"], "weight")]:
        changed = tram("update", "good", *flags)
        assert changed.returncode != 0 and param in changed.stderr
    shown = tram("show", "good")
    assert shown.returncode == 0 and '"priority": "batch"' in shown.stdout
