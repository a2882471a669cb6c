#!/usr/bin/env bash
# Builds esft and runs every test (unit, parity against transformers, CLI) with ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
ctest --test-dir "${BUILD_DIR:-build}" --output-on-failure -j "$(nproc)"
