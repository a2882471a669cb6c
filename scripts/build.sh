#!/usr/bin/env bash
# Configures and builds esft into build/ (Release). Extra arguments go to cmake, e.g. -DESFT_STATIC_PLUGINS=ON.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
args=(-S . -B "$build" -DCMAKE_BUILD_TYPE=Release)
command -v ninja >/dev/null && args+=(-G Ninja)
command -v ccache >/dev/null && args+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake "${args[@]}" "$@"
cmake --build "$build" -j "$(nproc)"
