"""Settings: what the process environment and `.env` say (TRAM_* and LITELLM_MASTER_KEY for
drop-in compatibility); built once by the CLI or a test and passed into `create_app`."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values

from tram.files import private_dir

__all__ = ["MASTER_KEY_VARS", "Settings", "load_settings"]

MASTER_KEY_VARS = ("TRAM_MASTER_KEY", "LITELLM_MASTER_KEY")


@dataclass(frozen=True)
class Settings:
    """What the process environment (and `.env`) says; built once by the CLI or a test."""

    master_key: str | None
    master_key_source: str
    config_path: Path | None
    database_url: str | None = None
    redis_url: str | None = None
    data_dir: Path = Path("data")
    env: Mapping[str, str] = field(default_factory=dict)


def _merged_env(environ: Mapping[str, str], dotenv_path: Path) -> dict[str, str]:
    merged: dict[str, str] = {}
    if dotenv_path.is_file():
        merged.update({k: v for k, v in dotenv_values(dotenv_path).items() if v is not None})
    merged.update(environ)  # the real environment wins over .env, as usual
    return merged


def load_settings(
    environ: Mapping[str, str] | None = None,
    dotenv_path: Path = Path(".env"),
    config_path: Path | None = None,
    generate_key: bool = False,
) -> Settings:
    """Read TRAM_* (and LITELLM_MASTER_KEY) from the environment and `.env`.

    With `generate_key`, a missing master key is created once in the data dir (mode 0600) so
    that a fresh `tram up` is usable; its path is reported as the key's source.
    """
    env = _merged_env(os.environ if environ is None else environ, dotenv_path)
    data_dir = Path(env.get("TRAM_DATA_DIR", "data"))
    key, source = None, "none"
    for var in MASTER_KEY_VARS:
        if env.get(var):
            key = env[var]
            source = f"{var} ({'environment' if var in (environ or os.environ) else dotenv_path})"
            break
    if key is None:
        key_file = data_dir / "master.key"
        if key_file.is_file():
            key, source = key_file.read_text().strip(), str(key_file)
        elif generate_key:
            private_dir(data_dir, tighten=True)
            key = "sk-tram-master-" + secrets.token_urlsafe(24)
            key_file.touch(mode=0o600)
            key_file.write_text(key + "\n")
            source = f"{key_file} (generated now)"
    if config_path is None and env.get("TRAM_CONFIG"):
        config_path = Path(env["TRAM_CONFIG"])
    if config_path is None and Path("tram.yaml").is_file():
        config_path = Path("tram.yaml")
    return Settings(
        master_key=key,
        master_key_source=source,
        config_path=config_path,
        database_url=env.get("TRAM_DATABASE_URL"),
        redis_url=env.get("TRAM_REDIS_URL"),
        data_dir=data_dir,
        env=env,
    )
