"""Run the real `tram up` (supervisor + llama-server + gateway) as a subprocess for tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from tests.support.servers import free_port


def children_of(pid: int) -> list[int]:
    """Every live process whose parent is `pid` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class TramUp:
    """`tram up` in a folder of its own; `output` collects its stdout and stderr lines."""

    def __init__(self, cwd: Path, args: list[str], master_key: str,
                 env: dict[str, str] | None = None) -> None:
        self.cwd = cwd
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.output: list[str] = []
        full_env = {**os.environ, "TRAM_MASTER_KEY": master_key,
                    "TRAM_DATA_DIR": str(cwd / "data"), **(env or {})}
        full_env.pop("TRAM_CONFIG", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tram", "up", "--host", "127.0.0.1", "--port", str(self.port),
             *args],
            cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line.rstrip("\n"))

    def text(self) -> str:
        return "\n".join(self.output)

    def wait_up(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not any(line.startswith("Trạm is up") for line in self.output):
            if self.process.poll() is not None:
                raise RuntimeError(f"tram up exited with {self.process.returncode}:\n{self.text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"tram up did not come up in {timeout}s:\n{self.text()}")
            time.sleep(0.05)

    def engine_urls(self) -> dict[str, str]:
        """alias → where its engine listens, from the banner: http://127.0.0.1:PORT, or
        unix:/path/engine-N.sock (what `tram up` gives its engines unless a port is set)."""
        urls = {}
        for line in self.output:
            match = re.match(r"^\s+(\S+)\s.*\[engine ((?:http|unix):[^\]]+)\]", line)
            if match:
                urls[match.group(1)] = match.group(2)
        return urls

    def engine_key(self, alias: str) -> str:
        """The internal key of alias's engine, read from the engine process's environment (as
        any process of the same user could: engines are guarded against other users, other
        containers and the network, not against Trạm's own user)."""
        where = self.engine_urls()[alias].removeprefix("unix:")
        for pid in children_of(self.process.pid):
            try:
                if where.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes():
                    continue
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            for entry in environ:
                name, _, value = entry.decode().partition("=")
                if name in ("TRAM_ENGINE_KEY", "LLAMA_API_KEY"):
                    return value
        raise LookupError(f"no engine process for {alias}")

    def engine_upstream(self, alias: str, served_name: str | None = None) -> dict[str, str]:
        """An `upstreams:` entry of tram.yaml that reaches alias's engine as the gateway does."""
        where = self.engine_urls()[alias]
        upstream = {"url": where + "/v1", "api_key": self.engine_key(alias)}
        if where.startswith("unix:"):
            upstream = {"url": "http://localhost/v1", "socket": where.removeprefix("unix:"),
                        "api_key": upstream["api_key"]}
        if served_name is not None:
            upstream["served_name"] = served_name
        return upstream

    def engine_client(self, alias: str, **kwargs: object) -> httpx.Client:
        """An httpx client to the engine of `alias`, over its Unix socket or port, with no key
        (pass `headers=` with `engine_key` to use it as the gateway does)."""
        where = self.engine_urls()[alias]
        if where.startswith("unix:"):
            transport = httpx.HTTPTransport(uds=where.removeprefix("unix:"))
            return httpx.Client(base_url="http://localhost", transport=transport, **kwargs)  # type: ignore[arg-type]
        return httpx.Client(base_url=where, **kwargs)  # type: ignore[arg-type]

    def wait_exit(self, timeout: float = 30) -> int:
        return self.process.wait(timeout)

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()
