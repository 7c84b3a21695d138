#!/usr/bin/env bash
# Set up (idempotent), then start Trạm: engines + gateway on http://127.0.0.1:4000/v1.
# Extra arguments go to `tram up` (e.g. --port 4001, --model qwen-vl=/path/to/checkpoint).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/tram up "$@"
