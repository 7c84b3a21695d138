"""tram.yaml and settings: clear one-line errors (exit 2), env expansion, the master key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tram.config import ConfigError, load_config, load_settings, parse_config

REPO = Path(__file__).resolve().parents[1]


def run_tram(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tram", *args], cwd=cwd, capture_output=True, check=False,
                          text=True, timeout=60, env={"PATH": "/usr/bin:/bin", **(env or {})})


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("models:\n  - name: a\n    upstreams: [{url: nope}]\n",
         "models[0].upstreams[0].url: must be an http(s) URL"),
        ("models:\n  - name: a\n    vison: true\n", "models[0].vison: unknown key"),
        ("server: {port: 99999}\n", "server.port: Input should be less than or equal to 65535"),
        ("models: [\n", "invalid YAML at line 2"),
        ("models:\n  - {name: a}\n  - {name: a}\n", "model name 'a' appears twice"),
        ("models:\n  - name: a\n    upstreams: [{url: 'http://x/v1', api_key: '${NOPE_KEY}'}]\n",
         "models[0].upstreams[0].api_key: environment variable NOPE_KEY is not set"),
        ("- just a list\n", "the top level must be a mapping"),
    ],
)
def test_config_errors_name_file_key_and_problem(tmp_path: Path, yaml_text: str, expected: str) -> None:
    path = tmp_path / "tram.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    message = str(caught.value)
    assert message.startswith(str(path))
    assert expected in message
    assert "\n" not in message


def test_cli_config_error_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "tram.yaml").write_text("models:\n  - name: a\n    upstreams: [{url: nope}]\n")
    result = run_tram("serve", "--config", "tram.yaml", cwd=tmp_path,
                      env={"TRAM_MASTER_KEY": "k" * 20})
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "tram.yaml: models[0].upstreams[0].url" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_refuses_to_serve_without_a_master_key(tmp_path: Path) -> None:
    (tmp_path / "tram.yaml").write_text("models:\n  - {name: a, upstreams: [{url: 'http://x/v1'}]}\n")
    result = run_tram("serve", "--config", "tram.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert "TRAM_MASTER_KEY" in result.stderr and "LITELLM_MASTER_KEY" in result.stderr


def test_env_expansion_with_default() -> None:
    config = parse_config({"models": [{"name": "a", "upstreams": [
        {"url": "${BASE:-http://127.0.0.1:8001}/v1", "api_key": "${KEY}"}]}]}, "t",
        env={"KEY": "secret"})
    upstream = config.models[0].upstreams[0]
    assert upstream.url == "http://127.0.0.1:8001/v1"
    assert upstream.api_key == "secret"


def test_litellm_master_key_in_dotenv_keeps_working(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("LITELLM_MASTER_KEY=sk-from-dotenv\n")
    settings = load_settings(environ={}, dotenv_path=tmp_path / ".env")
    assert settings.master_key == "sk-from-dotenv"
    assert "LITELLM_MASTER_KEY" in settings.master_key_source
    both = load_settings(environ={"TRAM_MASTER_KEY": "sk-tram"}, dotenv_path=tmp_path / ".env")
    assert both.master_key == "sk-tram"


def test_generated_master_key_is_private_and_stable(tmp_path: Path) -> None:
    env = {"TRAM_DATA_DIR": str(tmp_path / "data")}
    first = load_settings(environ=env, dotenv_path=tmp_path / ".env", generate_key=True)
    again = load_settings(environ=env, dotenv_path=tmp_path / ".env", generate_key=True)
    key_file = tmp_path / "data" / "master.key"
    assert first.master_key and first.master_key == again.master_key
    assert key_file.stat().st_mode & 0o077 == 0
    assert "generated now" in first.master_key_source and "generated now" not in again.master_key_source


def test_example_config_is_valid() -> None:
    config = load_config(REPO / "tram.example.yaml", env={})
    assert [m.name for m in config.models] == ["qwen-text", "qwen-vl"]
    assert config.models[1].vision is True
