"""`python -m bench pipelining [--tree DIR] [--scale F] [--no-record]`: issue 23's pipelining
scenarios against a real `tram serve` (no engine needed: every request is `GET /health`). One
connection writing `GET /health` pipelined to 16 MiB, then 8 connections writing 4 MiB each
(both times F, default 1), each client
reading its answers as they come; meanwhile a fresh connection asks `/health` every 0.2 s.
Reports the gateway's peak RSS over its idle RSS (/proc VmRSS, sampled every 20 ms), the
seconds until every answer arrived, and the fresh connection's worst and median wait.
`--tree DIR` runs the gateway of another checkout (its `src/` first on PYTHONPATH), so a
before/after pair comes from one harness. Appends a dated section to bench/RESULTS.md."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["main"]

REQUEST = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
SCENARIOS = [(1, 16), (8, 4)]  # (connections, MiB each)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _start(tree: Path | None, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    (workdir / "tram.yaml").write_text(
        "models: [{name: qwen-text, upstreams: [{url: 'http://127.0.0.1:9/v1', "
        "served_name: none}], health: {probe_interval: 3600}}]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRAM_", "LITELLM_"))}
    env["TRAM_MASTER_KEY"] = "sk-bench-pipelining-0123456789"
    if tree is not None:
        env["PYTHONPATH"] = f"{tree / 'src'}:{env.get('PYTHONPATH', '')}"
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tram", "serve", "--config", "tram.yaml", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning"], cwd=workdir, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if b" 200 " in _ask(port):
                return process, port
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("tram serve did not start")


def _ask(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return sock.recv(4096)


def _burst(port: int, mib: float, answers: list[int]) -> None:
    count = int(mib * (1 << 20)) // len(REQUEST)
    with socket.create_connection(("127.0.0.1", port), timeout=300) as sock:
        threading.Thread(target=sock.sendall, args=(REQUEST * count,), daemon=True).start()
        seen, tail = 0, b""
        while seen < count:
            data = sock.recv(1 << 20)
            if not data:
                break
            seen += (tail + data).count(b"HTTP/1.1 200")
            tail = data[-11:]
        answers.append(seen - count)  # 0 when every answer came


def _scenario(port: int, pid: int, connections: int, mib: float) -> str:
    idle = _rss_mb(pid)
    peak = [idle]
    answers: list[int] = []
    bursts = [threading.Thread(target=_burst, args=(port, mib, answers))
              for _ in range(connections)]
    started = time.monotonic()
    for burst in bursts:
        burst.start()
    waits: list[float] = []
    while any(burst.is_alive() for burst in bursts):
        peak[0] = max(peak[0], _rss_mb(pid))
        if not waits or time.monotonic() - started > 0.2 * len(waits):
            asked = time.monotonic()
            _ask(port)
            waits.append(time.monotonic() - asked)
        time.sleep(0.02)
    elapsed = time.monotonic() - started
    waits.sort()
    whole = "all answered" if answers == [0] * connections else f"missing {answers}"
    return (f"| {connections} × {mib:g} MiB | {peak[0] - idle:+.0f} MB (idle {idle:.0f}) | "
            f"{elapsed:.1f} s, {whole} | {waits[-1] * 1000:.0f} / "
            f"{waits[len(waits) // 2] * 1000:.0f} ms |")


def run(tree: Path | None, scale: float) -> str:
    rows = []
    for connections, full in SCENARIOS:
        mib = full * scale
        with tempfile.TemporaryDirectory() as workdir:
            process, port = _start(tree, Path(workdir))
            try:
                rows.append(_scenario(port, process.pid, connections, mib))
            finally:
                process.send_signal(signal.SIGTERM)
                process.wait(30)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join([
        f"### Pipelined requests on one connection (issue 23, item 3) — {stamp}",
        f"`python -m bench pipelining{f' --tree {tree}' if tree else ''} --scale {scale:g}`: "
        f"gateway from "
        f"`{tree or 'this checkout'}`, {os.cpu_count()} CPUs shared with other work.",
        "",
        "| burst | gateway RSS, peak over idle | every answer | fresh /health wait, "
        "worst / median |",
        "|---|---|---|---|",
        *rows, ""])


def main(argv: list[str]) -> int:
    tree = Path(argv[argv.index("--tree") + 1]).resolve() if "--tree" in argv else None
    scale = float(argv[argv.index("--scale") + 1]) if "--scale" in argv else 1.0
    report = run(tree, scale)
    print(report)
    if "--no-record" not in argv:
        results = Path(__file__).with_name("RESULTS.md")
        results.write_text(results.read_text() + "\n" + report)
    return 0
