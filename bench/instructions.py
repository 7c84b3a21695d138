"""Instructions per request under valgrind's callgrind: this tree against another revision.

    python -m bench instructions [--base REV] [--reps 3] [--requests 100,700]

`bench compare` times whole requests on the machine, and on a shared 2-core VM its rounds
spread by ±20%: too coarse for a few percent. Instructions are exact for one run, so this
drives the real app in process (bench/inprocess.py's ASGI driver, 16 requests at a time, the
benchmark fake engine in its own process, not counted) under callgrind, once with the first
number of requests and once with the second, and reports the difference divided by the
difference in requests: start-up and imports cancel out. Three paths, as `bench compare`:
the master key, a virtual key with rpm/tpm/concurrency limits (usage to SQLite on both), and
a stream of 20 chunks. `PYTHONHASHSEED=0` on both trees, so dict and set layouts repeat.

Background loops that run on a clock (the batch runner's look for work, the engine-load
scrapes) are switched off where the tree has them: valgrind runs Python ~50× slower, so a
once-a-second task would be charged ~50× per request over what it costs at full speed. What
stays is in both trees (the usage writer's flushes, driven by the requests themselves).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import uvloop

from bench.compare import _tree
from bench.gateway import _wait
from bench.inprocess import BODY, STREAM_BODY, _create_key, _lifespan
from bench.inprocess import _drive as _drive_app
from bench.loadgen import KEY, free_port

ROOT = Path(__file__).resolve().parents[1]
PATHS = ("master", "virtual", "stream")
# Switched off where the tree knows them (an older tree's strict config refuses the keys).
QUIET = {"batches": {"run": False}, "sharing": {"queue": {"engine_signal": False}}}


def _config(engine: str) -> Any:
    from tram.config import parse_config

    models = {"models": [{"name": "bench", "upstreams": [
        {"url": engine + "/v1", "served_name": "bench"}], "health": {"probe_interval": 3600}}]}
    try:
        return parse_config({**models, **QUIET}, "bench")
    except Exception:  # noqa: BLE001 - an older tree without these settings
        return parse_config(models, "bench")


async def _drive(engine: str, path: str, requests: int) -> None:
    from tram.app import create_app
    from tram.config import Settings

    with tempfile.TemporaryDirectory(prefix="tram-instructions-") as workdir:
        settings = Settings(master_key=KEY, master_key_source="bench", config_path=None,
                            database_url=None, data_dir=Path(workdir) / "data")
        app = create_app(settings, _config(engine))
        shutdown = await _lifespan(app)
        token = await _create_key(app) if path == "virtual" else KEY
        body = STREAM_BODY if path == "stream" else BODY
        await _drive_app(app, token, body, requests, 16)  # warm-up, then `requests`
        await shutdown()


def _drive_main(path: str, requests: int) -> int:
    """In the process valgrind runs: start the fake engine (not traced), drive the app."""
    port = free_port()
    engine = subprocess.Popen(
        [sys.executable, "-m", "bench.fake_engine", "--port", str(port)], cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"})
    try:
        url = f"http://127.0.0.1:{port}"
        _wait(url)
        uvloop.run(_drive(url, path, requests))
    finally:
        engine.terminate()
        engine.wait(10)
    return 0


def _instructions(src: Path, path: str, requests: int) -> int:
    with tempfile.TemporaryDirectory(prefix="tram-callgrind-") as out:
        target = Path(out) / "callgrind.out"
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={target}",
             sys.executable, "-m", "bench.instructions", "--drive", path, str(requests)],
            cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": f"{src}:{ROOT}", "PYTHONHASHSEED": "0"})
        for line in target.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError("callgrind wrote no totals")


def main(argv: list[str]) -> int:
    if "--drive" in argv:
        at = argv.index("--drive")
        return _drive_main(argv[at + 1], int(argv[at + 2]))
    if shutil.which("valgrind") is None:
        print("valgrind is needed: apt-get install valgrind", file=sys.stderr)
        return 2
    base = argv[argv.index("--base") + 1] if "--base" in argv else "pre-route-table"
    reps = int(argv[argv.index("--reps") + 1]) if "--reps" in argv else 3
    low, high = (int(n) for n in (argv[argv.index("--requests") + 1] if "--requests" in argv
                                  else "100,700").split(","))
    counts: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="tram-instructions-") as workdir:
        trees = {"base": _tree(base, Path(workdir)), "current": ROOT / "src"}
        for _ in range(reps):
            for path in PATHS:
                for name, src in trees.items():
                    spent = _instructions(src, path, high) - _instructions(src, path, low)
                    counts.setdefault((name, path), []).append(spent / (high - low))
                    print(json.dumps({"tree": name, "path": path,
                                      "per_request": round(spent / (high - low))}),
                          file=sys.stderr)
    print(f"python -m bench instructions --base {base} --reps {reps} --requests {low},{high}")
    print("| path | base instructions/request, median (all) | current | current / base |")
    print("| --- | --- | --- | --- |")
    for path in PATHS:
        old, new = counts[("base", path)], counts[("current", path)]
        print(f"| {path} | {statistics.median(old):,.0f} ({', '.join(f'{v:,.0f}' for v in old)}) "
              f"| {statistics.median(new):,.0f} ({', '.join(f'{v:,.0f}' for v in new)}) "
              f"| {statistics.median(new) / statistics.median(old):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
