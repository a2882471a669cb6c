#!/usr/bin/env bash
# Configures and builds esft into build/ (Release) against the LibTorch of .venv (scripts/install-deps.sh makes it).
# Extra arguments go to cmake, e.g. -DESFT_STATIC_PLUGINS=ON or -DESFT_CUDA=OFF.
# clang++ is preferred when present (set CXX to choose): its precompiled header instantiates LibTorch's templates
# once instead of in every file, which makes a clean build about twice as fast as with g++.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
args=(-S . -B "$build" -DCMAKE_BUILD_TYPE=Release)
if [ -z "${CXX:-}" ] && [ ! -f "$build/CMakeCache.txt" ]; then
  clangxx=$(command -v clang++-14 || command -v clang++ || true)
  [ -n "$clangxx" ] && args+=(-DCMAKE_CXX_COMPILER="$clangxx")
fi
command -v ninja >/dev/null && args+=(-G Ninja)
if command -v ccache >/dev/null; then
  args+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  export CCACHE_SLOPPINESS=${CCACHE_SLOPPINESS:-pch_defines,time_macros,include_file_mtime,include_file_ctime}
fi
cmake "${args[@]}" "$@"
cmake --build "$build" -j "$(nproc)"
