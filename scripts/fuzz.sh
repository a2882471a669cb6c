#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/targets/*.cpp) with clang, AddressSanitizer and UBSan into build-fuzz/, and runs
# each for SECONDS (default 20) from its committed seed corpus (fuzz/corpus/<name>/). New interesting inputs collect
# in build-fuzz/corpus/<name>/ (kept between runs); a failing input is saved as build-fuzz/crashes/<name>/crash-*
# and the script exits 1 naming it: fix the bug, then commit the input to fuzz/regressions/<name>/ so that ctest
# replays it in every build.
#   usage: scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
shift || true
build=${FUZZ_BUILD_DIR:-build-fuzz}
clangxx=$(command -v clang++-14 || command -v clang++ || true)
clangc=$(command -v clang-14 || command -v clang || true)
[ -n "$clangxx" ] || { echo "fuzz: clang++ not found (scripts/install-deps.sh installs clang-14)" >&2; exit 1; }

args=(-S . -B "$build" -DCMAKE_BUILD_TYPE=Fuzz -DCMAKE_CXX_FLAGS_FUZZ="-O0 -gline-tables-only" -DCMAKE_CXX_COMPILER="$clangxx" -DCMAKE_C_COMPILER="$clangc"
      -DESFT_FUZZ=ON -DESFT_CUDA=OFF -DESFT_STATIC_PLUGINS=ON -DESFT_BUILD_TESTS=OFF -DESFT_BUILD_BENCH=OFF)
command -v ninja >/dev/null && args+=(-G Ninja)
command -v ccache >/dev/null && args+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake "${args[@]}" >/dev/null
cmake --build "$build" --target esft-fuzz-all -j "$(nproc)"

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in fuzz/targets/*.cpp; do targets+=("$(basename "$f" .cpp)"); done
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=()
printf '\n%-20s %8s %12s %10s %8s  %s\n' target seconds runs "execs/s" corpus result
for t in "${targets[@]}"; do
  corpus="$build/corpus/$t" crashes="$build/crashes/$t/" log="$build/logs/$t.log"
  mkdir -p "$corpus" "$crashes" "$(dirname "$log")"
  status=0
  seeds=("fuzz/corpus/$t"); [ -d "fuzz/regressions/$t" ] && seeds+=("fuzz/regressions/$t")
  "$build/bin/esft-fuzz-$t" "$corpus" "${seeds[@]}" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=6144 \
    -artifact_prefix="$crashes" -print_final_stats=1 >"$log" 2>&1 || status=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  size=$(find "$corpus" -type f | wc -l)
  if [ "$status" -eq 0 ]; then result=ok; else result="FAILED (exit $status; see $log)"; failed+=("$t"); fi
  printf '%-20s %8s %12s %10s %8s  %s\n' "$t" "$seconds" "${runs:-?}" "${rate:-?}" "$size" "$result"
done
if [ ${#failed[@]} -gt 0 ]; then
  echo
  for t in "${failed[@]}"; do
    echo "fuzz: $t failed; its input: $(ls -t "$build/crashes/$t/" 2>/dev/null | head -1 | sed "s|^|$build/crashes/$t/|")"
    grep -m3 -E "ERROR:|esft fuzz:|runtime error:" "$build/logs/$t.log" | sed 's/^/    /' || true
  done
  exit 1
fi
