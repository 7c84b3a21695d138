"""Configuration: Settings (environment and `.env`, `settings.py`) and the `tram.yaml` schema
(`upstreams.py`, `models.py`, `schema.py`), read by `loading.py`.

Both are plain values passed into `create_app`; nothing here is global. A configuration error
is raised as `ConfigError`, whose one-line message names the file, the key and what is wrong;
the CLI prints it and exits with status 2. Every name is importable from `tram.config`.
"""

from tram.config.base import ConfigError
from tram.config.loading import load_config, parse_config, read_yaml
from tram.config.models import EngineConfig, MediaLimits, ModelConfig, RouteMode
from tram.config.schema import (
    BatchesConfig,
    DatabaseConfig,
    LimitsConfig,
    QueueConfig,
    ResponsesConfig,
    ServerConfig,
    SharingConfig,
    TramConfig,
    UsageConfig,
    VisionConfig,
)
from tram.config.settings import MASTER_KEY_VARS, Settings, load_settings
from tram.config.upstreams import HealthConfig, RoutingConfig, Timeouts, UpstreamConfig

__all__ = [
    "MASTER_KEY_VARS",
    "BatchesConfig",
    "ConfigError",
    "DatabaseConfig",
    "EngineConfig",
    "HealthConfig",
    "LimitsConfig",
    "MediaLimits",
    "ModelConfig",
    "QueueConfig",
    "ResponsesConfig",
    "RouteMode",
    "RoutingConfig",
    "ServerConfig",
    "Settings",
    "SharingConfig",
    "Timeouts",
    "TramConfig",
    "UpstreamConfig",
    "UsageConfig",
    "VisionConfig",
    "load_config",
    "load_settings",
    "parse_config",
    "read_yaml",
]
