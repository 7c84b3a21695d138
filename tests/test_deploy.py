"""deploy/compose.yaml and the gateway image, read as an operator runs them: the Compose file
against the compose-spec schema (vendored by check-jsonschema) and interpolated by Docker
Compose itself with the shipped .env.example, its engines' flags equal to what `tram up
--profile qwen` runs, the engines reachable by the gateway alone, a start order that holds
after a reboot (the engines' entrypoint run for real), the gateway's image limits equal to the
engines', and a build context without the checkout's gigabytes. Kubernetes:
test_deploy_kubernetes.py; Caddy: test_deploy_caddy.py."""

from __future__ import annotations

import importlib.resources
import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.support.deploy import (
    DEPLOY,
    compose_config,
    compose_model,
    flag_value,
    pixel_cap,
    profile_flags,
    without,
)
from tram.config import load_settings, parse_config
from tram.kinds.guard import GUARD_DIR, GUARD_MIDDLEWARE, KEY_VARIABLE

ROOT = DEPLOY.parent
ENV = {"TRAM_DATABASE_URL": "postgresql://tram:x@postgres/tram", "TRAM_REDIS_URL": "redis://r:6379/0",
       "VLLM_API_KEY": "sk-engine"}
ENGINES = ("vllm-text", "vllm-vl")


@pytest.fixture(scope="module")
def example() -> dict[str, Any]:
    """The Compose model for the shipped deploy/.env.example, as Docker Compose resolves it."""
    return compose_model(DEPLOY / ".env.example")


def _env_file(tmp_path: Path, drop: tuple[str, ...] = (), **add: str) -> Path:
    lines = [line for line in (DEPLOY / ".env.example").read_text().splitlines()
             if not line.startswith(tuple(f"{name}=" for name in drop))]
    path = tmp_path / ".env"
    path.write_text("\n".join([*lines, *(f"{k}={v}" for k, v in add.items())]) + "\n")
    return path


# -- interpolation (item 1) -----------------------------------------------------------------


def test_compose_interpolates_with_the_example_env(example: dict[str, Any], tmp_path: Path) -> None:
    tram = example["services"]["tram"]["environment"]
    settings = load_settings(environ=tram, dotenv_path=tmp_path / "none")
    assert settings.master_key == "sk-change-me-to-a-long-random-string"
    assert settings.master_key_source.startswith("TRAM_MASTER_KEY")
    assert tram["TRAM_DATABASE_URL"] == "postgresql://tram:change-me@postgres:5432/tram"


def test_compose_interpolates_with_only_the_litellm_key(tmp_path: Path) -> None:
    env_file = _env_file(tmp_path, drop=("TRAM_MASTER_KEY",), LITELLM_MASTER_KEY="sk-litellm-0123")
    tram = compose_model(env_file)["services"]["tram"]["environment"]
    settings = load_settings(environ=tram, dotenv_path=tmp_path / "none")
    assert (settings.master_key, settings.master_key_source.split()[0]) == \
        ("sk-litellm-0123", "LITELLM_MASTER_KEY")


def test_compose_still_requires_what_it_cannot_run_without(tmp_path: Path) -> None:
    done = compose_config(_env_file(tmp_path, drop=("VLLM_API_KEY",)))
    assert done.returncode != 0 and "VLLM_API_KEY" in done.stderr


def test_compose_is_valid_against_the_compose_spec() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    schema = json.loads((importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
                         / "compose-spec.json").read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose), key=str)
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors]
    # The validator does refuse what the spec does not allow.
    broken = {**compose, "services": {"x": {"image": "a", "restart": 5, "no_such_key": 1}}}
    assert list(jsonschema.Draft7Validator(schema).iter_errors(broken))


# -- the system ----------------------------------------------------------------------------


def test_compose_runs_the_guides_system(example: dict[str, Any]) -> None:
    services = example["services"]
    assert set(services) == {"models", "vllm-text", "vllm-vl", "postgres", "redis", "tram", "caddy"}
    for name in ENGINES:
        vllm = services[name]
        gpu = vllm["deploy"]["resources"]["reservations"]["devices"][0]
        assert gpu["driver"] == "nvidia" and gpu["capabilities"] == ["gpu"]
        assert {"type": "volume", "source": "hf-cache", "target": "/root/.cache/huggingface",
                "volume": {}} in vllm["volumes"]
        assert "/health" in " ".join(vllm["healthcheck"]["test"])
        assert vllm["environment"]["HF_HUB_OFFLINE"] == "1"  # weights come from `models`
        assert vllm["depends_on"]["models"]["condition"] == "service_completed_successfully"
    assert services["models"]["command"] == ["Qwen/Qwen3-8B", "Qwen/Qwen3-VL-8B-Instruct"]
    assert all(services["tram"]["depends_on"][s]["condition"] == "service_healthy"
               for s in ("postgres", "redis", *ENGINES))
    assert [(p["target"], p["published"]) for p in services["caddy"]["ports"][:2]] == \
        [(80, "80"), (443, "443")]
    assert {"hf-cache", "pgdata", "tram-data", "caddy-data"} <= set(example["volumes"])
    assert "{$TRAM_DOMAIN}" in (DEPLOY / "Caddyfile").read_text()


def test_compose_engines_use_the_profiles_flags(example: dict[str, Any]) -> None:
    for service, model in (("vllm-text", "qwen-text"), ("vllm-vl", "qwen-vl")):
        command = example["services"][service]["command"]
        assert without(command[1:], "--middleware", "--shutdown-timeout",
                       "--host", "--port", "--served-model-name", "--gpu-memory-utilization") == \
            profile_flags(model), service
        # Requests in flight finish when the container is stopped (vLLM aborts them otherwise),
        # before Docker's stop grace period runs out.
        drain = int(flag_value(command, "--shutdown-timeout"))
        assert 0 < drain < _seconds(example["services"][service]["stop_grace_period"])


def _seconds(duration: str) -> int:
    """A Go duration as Compose writes it (1m30s)."""
    units = {"h": 3600, "m": 60, "s": 1}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([hms])", duration))


def test_compose_engines_are_reachable_by_the_gateway_alone(example: dict[str, Any]) -> None:
    services, networks = example["services"], example["networks"]
    assert networks["engines"].get("internal") is True
    assert "engines" in services["tram"]["networks"]
    guard_source = GUARD_DIR / "tram_engine_guard.py"
    for name in ENGINES:
        vllm = services[name]
        assert "ports" not in vllm and set(vllm["networks"]) == {"engines"}, name
        assert flag_value(vllm["command"], "--middleware") == GUARD_MIDDLEWARE
        mounts = {m["target"]: m for m in vllm["volumes"]}
        guard = mounts[vllm["environment"]["PYTHONPATH"] + "/tram_engine_guard.py"]
        assert Path(guard["source"]) == guard_source and guard["read_only"]
        env = vllm["environment"]
        assert env[KEY_VARIABLE] == env["VLLM_API_KEY"] == "sk-engine-change-me"
    # The key the gateway sends upstream is that same secret.
    assert services["tram"]["environment"]["VLLM_API_KEY"] == "sk-engine-change-me"
    config = parse_config(yaml.safe_load((DEPLOY / "tram.compose.yaml").read_text()), "compose",
                          services["tram"]["environment"])
    assert {m.upstreams[0].api_key for m in config.models} == {"sk-engine-change-me"}
    assert "engines" not in services["models"].get("networks", {})  # the downloader's way out


def test_the_gateway_configs_shipped_for_compose_and_kubernetes_parse() -> None:
    for path in (DEPLOY / "tram.compose.yaml", DEPLOY / "kubernetes" / "base" / "tram.yaml"):
        config = parse_config(yaml.safe_load(path.read_text()), str(path), ENV)
        assert [m.name for m in config.models] == ["qwen-text", "qwen-vl"]
        assert [m.upstreams[0].served_name for m in config.models] == \
            ["Qwen/Qwen3-8B", "Qwen/Qwen3-VL-8B-Instruct"]
        assert all(m.upstreams[0].api_key == "sk-engine" for m in config.models)
        assert config.sharing.queue.class_prompts == {"batch": 1}  # batch prompts paced


def test_compose_gateway_limits_equal_the_engines(example: dict[str, Any]) -> None:
    config = parse_config(yaml.safe_load((DEPLOY / "tram.compose.yaml").read_text()), "compose",
                          ENV)
    vl = next(m for m in config.models if m.name == "qwen-vl")
    command = example["services"]["vllm-vl"]["command"]
    assert vl.max_images == json.loads(flag_value(command, "--limit-mm-per-prompt"))["image"]
    assert vl.max_pixels == pixel_cap(flag_value(command, "--mm-processor-kwargs"))


# -- start order after a reboot (item 9) ----------------------------------------------------


class _Health(BaseHTTPRequestHandler):
    healthy = threading.Event()

    def do_GET(self) -> None:
        self.send_response(200 if self.healthy.is_set() else 503)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def neighbour() -> Iterator[tuple[str, threading.Event]]:
    """A loopback stand-in for vllm-text's /health: 503 until its event is set."""
    handler = type("Health", (_Health,), {"healthy": threading.Event()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/health", handler.healthy
    finally:
        server.shutdown()
        server.server_close()


def test_compose_vl_engine_waits_for_the_text_engine_even_after_a_reboot(
        example: dict[str, Any], neighbour: tuple[str, threading.Event], tmp_path: Path) -> None:
    vl = example["services"]["vllm-vl"]
    # depends_on orders `up` only; after a reboot the entrypoint itself waits.
    assert vl["depends_on"]["vllm-text"]["condition"] == "service_healthy"
    assert vl["environment"]["TRAM_START_AFTER"] == "http://vllm-text:8000/health"
    mounts = {m["target"]: Path(m["source"]) for m in vl["volumes"]}
    assert vl["entrypoint"][0] == "sh"
    script = mounts[vl["entrypoint"][1]]
    assert script == DEPLOY / "engine" / "start-vllm.sh"
    assert "TRAM_START_AFTER" not in example["services"]["vllm-text"]["environment"]
    # The entrypoint run for real, with a stand-in `vllm` that records how it was started.
    url, healthy = neighbour
    (tmp_path / "vllm").write_text('#!/bin/sh\necho "$@" > "$0.started"\n')
    (tmp_path / "vllm").chmod(0o755)
    env = {"PATH": f"{tmp_path}:{os.environ['PATH']}", "TRAM_START_AFTER": url,
           "TRAM_START_POLL": "0.1"}
    process = subprocess.Popen(["sh", str(script), *vl["command"]], env=env,
                               stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
        assert process.poll() is None and not (tmp_path / "vllm.started").exists()
        healthy.set()
        assert process.wait(10) == 0
    finally:
        process.kill()
    assert (tmp_path / "vllm.started").read_text().split() == ["serve", *vl["command"]]
    assert f"waiting for {url}" in (process.stderr.read() if process.stderr else "")


# -- the gateway's image (item 10) ----------------------------------------------------------


def _context(root: Path) -> set[str]:
    """The files `docker build` sends for `root` with its .dockerignore, by Docker's own rules
    (the Docker SDK's implementation of them)."""
    from docker.utils.build import exclude_paths

    patterns = [line.strip() for line in (root / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    return {p for p in exclude_paths(str(root), patterns, dockerfile="deploy/Dockerfile")
            if (root / p).is_file()}


def test_the_build_context_is_what_the_image_copies(tmp_path: Path) -> None:
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", (DEPLOY / "Dockerfile").read_text(), re.M)
    sources = {name for line in copied for name in line.split()}
    assert sources == {"pyproject.toml", "README.md", "src"}
    # A checkout as an operator has it, with the gigabytes beside the sources.
    for name in (".venv/lib/torch.so", ".git/objects/pack/p.pack", "data/tram.db",
                 "bench/RESULTS.md", "tests/test_x.py", "src/tram/__pycache__/a.pyc",
                 "src/tram/__init__.py", "pyproject.toml", "README.md", "deploy/Dockerfile"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    (tmp_path / ".dockerignore").write_text((ROOT / ".dockerignore").read_text())
    assert _context(tmp_path) == {"src/tram/__init__.py", "pyproject.toml", "README.md",
                                  "deploy/Dockerfile", ".dockerignore"}
    real = _context(ROOT)
    assert {"pyproject.toml", "README.md", "src/tram/kinds/guard/tram_engine_guard.py"} <= real
    assert not {p for p in real if not p.startswith("src/")} - \
        {"pyproject.toml", "README.md", "deploy/Dockerfile", ".dockerignore"}


def test_the_image_is_multi_stage_non_root_and_checks_its_health() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", dockerfile, flags=re.M)[1:]
    assert len(stages) == 2
    final = stages[-1]
    assert "build-essential" in stages[0] and "build-essential" not in final
    assert re.search(r"^USER 10001$", final, re.M) and "HEALTHCHECK" in final
    assert "/health" in final and "EXPOSE 4000" in final
