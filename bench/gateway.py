"""Gateway benchmark: Trạm against nginx and against the engine directly, in one run.

    python -m bench gateway [--quick] [--no-record]

Everything on loopback. The benchmark fake engine and the load generators run on core 0, the
proxy under test (Trạm, or nginx as the reference) alone on core 1, one worker each. Trạm runs
its real path: master-key auth, validation, alias rewriting, routing, relaying, access log and
metrics. A "python floor" row (`bench/floor_server.py`: uvicorn and a forward-only ASGI app)
shows what the server stack costs before any gateway work. Appends a dated section to
bench/RESULTS.md with the command, versions and ratios.
"""

from __future__ import annotations

import datetime
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.loadgen import KEY, RateResult, StreamResult, free_port, streams, wrk

RESULTS = Path(__file__).with_name("RESULTS.md")
ROOT = Path(__file__).resolve().parents[1]

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    upstream engine {{ server 127.0.0.1:{engine}; keepalive 512; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://engine;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
}}
"""



def _wait(url: str, path: str = "/v1/models") -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + path, headers={"Authorization": f"Bearer {KEY}"},
                         timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not start")


def _cpu_seconds(pid: int) -> float:
    """CPU time of a process and its children (nginx's work is in its worker process)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry.name) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def listen_drops() -> tuple[int, int]:
    """The kernel's ListenOverflows and ListenDrops (TcpExt, /proc/net/netstat): SYNs or
    connections dropped because an accept queue was full, the cause of 1 s and 3 s stalls
    (SYN retransmission timers) under many new connections."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], map(int, values.split()[1:]), strict=False))
            return table.get("ListenOverflows", 0), table.get("ListenDrops", 0)
    return 0, 0


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Target:
    name: str
    url: str
    pid: int | None  # the proxy process, for CPU and memory
    key: str = KEY


def _start(argv: list[str], cpu: str, **kwargs: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["taskset", "-c", cpu, *argv], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, **kwargs)  # type: ignore[call-overload]


def stop_processes(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to each, last started first; SIGKILL to one that ignores it for 10 s."""
    for process in reversed(processes):
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def run(quick: bool) -> str:
    os.sched_setaffinity(0, {0})  # this process (the stream client) shares core 0 with wrk
    seconds = 3 if quick else 10
    concurrencies = [1, 64] if quick else [1, 16, 64, 256]
    workdir = Path(tempfile.mkdtemp(prefix="tram-bench-"))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        engine_port, nginx_port, tram_port = free_port(), free_port(), free_port()
        processes.append(_start([sys.executable, "-m", "bench.fake_engine", "--port",
                                 str(engine_port)], "0", cwd=ROOT))
        engine = f"http://127.0.0.1:{engine_port}"
        _wait(engine)

        (workdir / "nginx.conf").write_text(NGINX_CONF.format(dir=workdir, engine=engine_port,
                                                              port=nginx_port))
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        processes.append(_start([nginx, "-c", str(workdir / "nginx.conf")], "1"))
        (workdir / "tram.yaml").write_text(
            "models:\n  - name: bench\n    upstreams: [{url: '" + engine + "/v1', "
            "served_name: bench}]\n    health: {probe_interval: 3600}\n")
        env = {**os.environ, "TRAM_MASTER_KEY": KEY}
        processes.append(_start([sys.executable, "-m", "tram", "serve", "--config",
                                 str(workdir / "tram.yaml"), "--host", "127.0.0.1", "--port",
                                 str(tram_port), "--log-level", "warning"], "1", env=env,
                                cwd=workdir))
        targets = [Target("direct", engine, None),
                   Target("nginx", f"http://127.0.0.1:{nginx_port}", processes[1].pid),
                   Target("tram", f"http://127.0.0.1:{tram_port}", processes[2].pid)]
        for target in targets:
            _wait(target.url)
        # The full path: a virtual key (looked up in the store on every request) with limits
        # set high enough not to refuse, and usage written for every request.
        virtual = httpx.post(targets[2].url + "/admin/keys", headers={"Authorization": f"Bearer {KEY}"},
                             json={"name": "bench", "rpm": 10**9, "tpm": 10**9,
                                   "max_concurrency": 10**6}).json()["key"]
        targets.append(Target("tram+keys", targets[2].url, processes[2].pid, virtual))
        tram_pid = processes[2].pid
        # After the others, so the stream runs (targets[:3]) stay direct, nginx and Trạm.
        targets += [_floor_target(engine, processes),
                    *_redis_target(workdir, engine, env, processes)]
        # the real proxy process is taskset's child (taskset execs, so the pid is the same)
        idle_rss = _rss_mb(tram_pid)

        rates: dict[tuple[str, int], RateResult] = {}
        cpu_ms: dict[str, float] = {}
        overflows: dict[str, tuple[int, int]] = {}
        for target in targets:
            wrk(target.url, 16, 1, "0", target.key)  # warm-up: connections, caches
            for c in concurrencies:
                before = _cpu_seconds(target.pid) if target.pid else 0.0
                dropped = listen_drops()
                rates[(target.name, c)] = result = wrk(target.url, c, seconds, "0", target.key)
                if c == max(concurrencies):
                    after = listen_drops()
                    overflows[target.name] = (after[0] - dropped[0], after[1] - dropped[1])
                if c == 64 and target.pid:
                    cpu_ms[target.name] = (_cpu_seconds(target.pid) - before) * 1000 / result.requests
        streamed: dict[str, StreamResult] = {}
        paced: dict[str, StreamResult] = {}
        many: dict[str, StreamResult] = {}
        for target in targets[:3]:
            streamed[target.name] = streams(target.url, 16, 400 if quick else 2000, 20, 0)
            paced[target.name] = streams(target.url, 1, 20 if quick else 50, 5, 20)
            many[target.name] = streams(target.url, 256, 256, 20, 20)
        after_rss = _rss_mb(tram_pid)
        extra: list[str] = []
        if not quick:
            extra = _leak_and_workers(targets[2].url, tram_pid, rates[("tram", 64)].rps, engine,
                                      workdir, env)
    finally:
        stop_processes(processes)
        shutil.rmtree(workdir, ignore_errors=True)
    overflow_line = (f"\nListen queue at c={max(concurrencies)} (TcpExt ListenOverflows / "
                     "ListenDrops during the run): " + ", ".join(
                         f"{name} {o} / {d}" for name, (o, d) in overflows.items()) + "\n")
    return _report(quick, seconds, concurrencies, rates, cpu_ms, streamed, paced, many,
                   idle_rss, after_rss) + overflow_line + "".join(line + "\n" for line in extra)


def _floor_target(engine: str, processes: list[subprocess.Popen[bytes]]) -> Target:
    """uvicorn + a forward-only ASGI app on the proxy's core: the Python server stack's floor."""
    port = free_port()
    processes.append(_start([sys.executable, "-m", "bench.floor_server", engine, str(port)],
                            "1", cwd=ROOT))
    url = f"http://127.0.0.1:{port}"
    _wait(url)
    return Target("python floor", url, processes[-1].pid)


def _redis_target(workdir: Path, engine: str, env: dict[str, str],
                  processes: list[subprocess.Popen[bytes]]) -> list[Target]:
    """A second Trạm whose limits are counted in Redis (the multi-instance setting), the same
    virtual key and limits; Redis runs on core 0 with the load generators (its CPU is not
    counted as the gateway's)."""
    redis = shutil.which("redis-server")
    if redis is None:
        return []
    redis_port, port = free_port(), free_port()
    processes.append(_start([redis, "--port", str(redis_port), "--bind", "127.0.0.1", "--save",
                             "", "--appendonly", "no"], "0"))
    folder = workdir / "redis-tram"
    folder.mkdir()
    (folder / "tram.yaml").write_text(
        f"limits: {{redis_url: 'redis://127.0.0.1:{redis_port}/0'}}\n"
        "models:\n  - name: bench\n    upstreams: [{url: '" + engine + "/v1', "
        "served_name: bench}]\n    health: {probe_interval: 3600}\n")
    processes.append(_start([sys.executable, "-m", "tram", "serve", "--config", "tram.yaml",
                             "--host", "127.0.0.1", "--port", str(port), "--log-level",
                             "warning"], "1", env={**env, "TRAM_DATA_DIR": str(folder / "data")},
                            cwd=folder))
    url = f"http://127.0.0.1:{port}"
    _wait(url)
    key = httpx.post(url + "/admin/keys", headers={"Authorization": f"Bearer {KEY}"},
                     json={"name": "bench", "rpm": 10**9, "tpm": 10**9,
                           "max_concurrency": 10**6}).json()["key"]
    return [Target("tram+keys+redis", url, processes[-1].pid, key)]


def _leak_and_workers(tram_url: str, tram_pid: int, rate: float, engine: str, workdir: Path,
                      env: dict[str, str]) -> list[str]:
    """RSS after ~20,000 and ~200,000 requests; `--workers 1` vs `--workers 2` (unpinned)."""
    served = 0
    rss = {}
    for goal in (20_000, 200_000):
        result = wrk(tram_url, 64, max(2, math.ceil((goal - served) / rate)), "0")
        served += result.requests
        rss[goal] = (served, _rss_mb(tram_pid))
    lines = ["", f"- Trạm RSS after {rss[20_000][0]:,} requests: {rss[20_000][1]:.1f} MB; after "
             f"{rss[200_000][0]:,}: {rss[200_000][1]:.1f} MB "
             f"({(rss[200_000][1] / rss[20_000][1] - 1) * 100:+.1f}%, target within 10%)"]
    rates = {}
    for workers in (1, 2):
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "tram", "serve", "--config", str(workdir / "tram.yaml"),
             "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
             "--log-level", "warning"], env=env, cwd=workdir, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        try:
            _wait(f"http://127.0.0.1:{port}")
            wrk(f"http://127.0.0.1:{port}", 64, 1, "0-1")
            rates[workers] = wrk(f"http://127.0.0.1:{port}", 64, 10, "0-1").rps
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
    lines.append(f"- `tram serve --workers 1` vs `--workers 2`, nothing pinned (wrk and the fake "
                 f"engine share the 2 cores): {rates[1]:,.0f} vs {rates[2]:,.0f} req/s "
                 f"(×{rates[2] / rates[1]:.2f})")
    return lines


def _report(quick: bool, seconds: float, concurrencies: list[int],
            rates: dict[tuple[str, int], RateResult], cpu_ms: dict[str, float],
            streamed: dict[str, StreamResult], paced: dict[str, StreamResult],
            many: dict[str, StreamResult], idle_rss: float, after_rss: float) -> str:
    nginx_version = subprocess.run(["nginx", "-v"], capture_output=True, text=True,
                                   check=False).stderr.strip()
    lines = [
        f"### Gateway — {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Command: `python -m bench gateway{' --quick' if quick else ''}` · {os.cpu_count()} "
        f"cores · Python {platform.python_version()} · {nginx_version} · fake engine + wrk + "
        f"stream client on core 0, proxy alone on core 1, one worker · {seconds:g} s per rate "
        "run · `tram`: master key; `tram+keys`: a virtual key with limits, usage written",
        "",
        "| target | c | req/s | p50 ms | p90 ms | p99 ms | errors (of which > 2 s) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (name, c), r in rates.items():
        lines.append(f"| {name} | {c} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p90_ms:.2f} | "
                     f"{r.p99_ms:.2f} | {r.errors} ({r.timeouts}) |")
    top = max(concurrencies)
    c64 = 64 if 64 in concurrencies else top
    lines += [
        "",
        "| measure | direct | nginx | Trạm | Trạm/nginx | target |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| req/s, c={c64} | {rates[('direct', c64)].rps:,.0f} | {rates[('nginx', c64)].rps:,.0f} "
        f"| {rates[('tram', c64)].rps:,.0f} | "
        f"{rates[('tram', c64)].rps / rates[('nginx', c64)].rps:.3f} | – |",
        f"| added p50 latency at c=1, ms | – | "
        f"{rates[('nginx', 1)].p50_ms - rates[('direct', 1)].p50_ms:.3f} | "
        f"{rates[('tram', 1)].p50_ms - rates[('direct', 1)].p50_ms:.3f} | – | ≤ 0.3 |",
        f"| proxy CPU per request at c={c64}, ms | – | {cpu_ms.get('nginx', 0):.3f} | "
        f"{cpu_ms.get('tram', 0):.3f} | – | – |",
        f"| full path (virtual key + limits + usage) CPU per request at c={c64}, ms | – | – | "
        f"{cpu_ms.get('tram+keys', 0):.3f} | – | ≤ 0.25 |",
        f"| forward-only floor (python floor) CPU per request at c={c64}, ms | – | – | "
        f"{cpu_ms.get('python floor', 0):.3f} | – | ≤ 0.07 |",
        f"| streams/s (20 chunks, c=16) | {streamed['direct'].streams_per_s:,.0f} | "
        f"{streamed['nginx'].streams_per_s:,.0f} | {streamed['tram'].streams_per_s:,.0f} | "
        f"{streamed['tram'].streams_per_s / streamed['nginx'].streams_per_s:.3f} | ≥ 0.6 |",
        f"| TTFB p50, paced 20 ms/chunk, ms | {paced['direct'].ttfb_p50_ms:.2f} | "
        f"{paced['nginx'].ttfb_p50_ms:.2f} | {paced['tram'].ttfb_p50_ms:.2f} | – | "
        "≤ direct + 0.5 |",
        f"| 256 paced streams: gap p99 ms / failures | {many['direct'].gap_p99_ms:.1f} / "
        f"{many['direct'].failures} | {many['nginx'].gap_p99_ms:.1f} / {many['nginx'].failures} "
        f"| {many['tram'].gap_p99_ms:.1f} / {many['tram'].failures} | – | ≤ direct + 5, 0 |",
        f"| Trạm RSS idle → after the run, MB | – | – | {idle_rss:.0f} → {after_rss:.0f} | – | "
        "≤ 80 |",
        "",
        f"Full path (virtual key looked up per request, limits, usage rows) vs master key, "
        f"same process, c={c64}: {rates[('tram+keys', c64)].rps:,.0f} vs "
        f"{rates[('tram', c64)].rps:,.0f} req/s; CPU per request "
        f"{cpu_ms.get('tram+keys', 0):.3f} vs {cpu_ms.get('tram', 0):.3f} ms "
        f"(cost ×{cpu_ms.get('tram+keys', 0) / max(cpu_ms.get('tram', 1e-9), 1e-9):.2f}; "
        "target ≤ ×1.3).",
    ]
    if ("python floor", c64) in rates:
        lines += [
            "",
            f"Python floor (`bench/floor_server.py`: uvicorn + an ASGI app that only forwards "
            f"the body with Trạm's engine client; no gateway), c={c64}: "
            f"{rates[('python floor', c64)].rps:,.0f} req/s, CPU per request "
            f"{cpu_ms.get('python floor', 0):.3f} ms: what this server stack costs before any "
            "gateway work.",
        ]
    if ("tram+keys+redis", c64) in rates:
        lines += [
            "",
            f"Same full path with the limits counted in Redis (a second Trạm, `limits.redis_url`; "
            f"two Lua calls per request), c={c64}: {rates[('tram+keys+redis', c64)].rps:,.0f} "
            f"req/s; CPU per request {cpu_ms.get('tram+keys+redis', 0):.3f} ms (×"
            f"{cpu_ms.get('tram+keys+redis', 0) / max(cpu_ms.get('tram', 1e-9), 1e-9):.2f} the "
            "master-key path; Redis's own CPU not included).",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench gateway")
    parser.add_argument("--quick", action="store_true", help="fewer runs; under 2 minutes")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args(argv)
    if not shutil.which("wrk") or not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()):
        print("bench gateway needs wrk and nginx: apt-get install -y wrk nginx-light",
              file=sys.stderr)
        return 2
    report = run(args.quick)
    print(report)
    if not args.no_record:
        with RESULTS.open("a", encoding="utf-8") as results:
            results.write("\n" + report)
    return 0
