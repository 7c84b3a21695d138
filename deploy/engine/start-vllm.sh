#!/bin/sh
# Entrypoint of the vLLM containers in deploy/compose.yaml: wait until every engine named in
# TRAM_START_AFTER (space-separated /health URLs) answers, then become `vllm serve "$@"`.
# Why: after a host reboot Docker restarts every container at once, without depends_on, and two
# vLLM engines sizing their memory on one GPU at the same moment both misjudge it. The guard
# module (tram_engine_guard, on PYTHONPATH) lets GET /health through without a key.
set -eu
for url in ${TRAM_START_AFTER:-}; do
  echo "start-vllm: waiting for $url before starting vLLM" >&2
  until python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)' \
      "$url" 2>/dev/null; do
    sleep "${TRAM_START_POLL:-5}"
  done
done
exec vllm serve "$@"
