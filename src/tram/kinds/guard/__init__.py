"""The key guard every engine Trạm starts runs in front of its routes (`tram_engine_guard`).

The module beside this file is standalone (standard library only) so that an engine's own
environment can import it: vLLM loads it with `--middleware tram_engine_guard.EngineKeyGuard`
from this folder on its PYTHONPATH (`GUARD_DIR`), in `tram up` and in the deploy/ images alike.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["GUARD_DIR", "GUARD_MIDDLEWARE", "KEY_VARIABLE"]

GUARD_DIR = Path(__file__).resolve().parent
GUARD_MIDDLEWARE = "tram_engine_guard.EngineKeyGuard"
KEY_VARIABLE = "TRAM_ENGINE_KEY"
