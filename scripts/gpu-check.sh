#!/usr/bin/env bash
# The GPU check, for a lent CUDA machine (PyTorch with CUDA and transformers installed, no apt, no network), in one
# call of under 10 minutes: build esft against the machine's own PyTorch, run the parity suite on the GPU (float32 with
# the fixtures' tolerances and each attention and expert kernel; bfloat16 with the tolerances stated in
# tests/family_parity.h), the benchmarks next to Hugging Face transformers (Qwen3-30B-A3B's sizes at 4 layers, then
# the small configurations of every mode), then every test on the CPU. Everything it prints is also saved under $OUT
# (default: build-gpu/gpu-check).
#
# Before: scripts/fetch-gpu-debs.sh (on a Debian machine) fills .gpu-debs/, which travels with the working tree.
# Without a GPU (a dry run on a development machine) the same steps run, the CUDA parity test reports "not run" and
# the benchmarks measure the CPU.
#   usage: scripts/gpu-check.sh [--dry-run]
#   --dry-run: the CPU only, with small benchmarks (what to run here before spending device time)
#   environment: GPU_CHECK_PYTHON (python3), DEBS_DIR (.gpu-debs), OUT, BENCH_STEPS (esft-bench-steps' arguments,
#                "--families qwen3_moe,gpt_oss --batch 8 --seq 1024 --repeat 5")
set -euo pipefail
cd "$(dirname "$0")/.."
dry_run=false
case "${1:-}" in
  --dry-run) dry_run=true ;;
  "") ;;
  *) echo "gpu-check: error: unknown argument '$1' (usage: scripts/gpu-check.sh [--dry-run])" >&2; exit 2 ;;
esac
if $dry_run; then
  export CUDA_VISIBLE_DEVICES=""
  BENCH_STEPS=${BENCH_STEPS:---families qwen3_moe --batch 1 --seq 64 --repeat 1}
fi
started=$(date +%s)
python=${GPU_CHECK_PYTHON:-$(command -v python3)}
debs=${DEBS_DIR:-.gpu-debs}
build=${BUILD_DIR:-build-gpu}
out=${OUT:-$build/gpu-check}
mkdir -p "$out"
exec > >(tee "$out/gpu-check.log") 2>&1
step() { printf '\n== [%4ds] %s\n' "$(($(date +%s) - started))" "$*"; }

step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi: no GPU"
echo "$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 2^20}' /proc/meminfo); $(uname -sr)"
"$python" -c 'import torch, transformers; print("python", torch.__version__, "CUDA", torch.version.cuda, "GPU visible:", torch.cuda.is_available(), "transformers", transformers.__version__)'
device=cpu dtype=float32
if "$python" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then device=cuda dtype=bfloat16; fi

step "unpack the Debian packages of $debs"
prefix=/tmp/esft-gpu-deps
mkdir -p "$prefix"
for f in "$debs"/*.deb; do dpkg-deb -x "$f" "$prefix"; done
libdir=$prefix/usr/lib/x86_64-linux-gnu
# zlib1g-dev's libz.so points at Debian's own /lib/x86_64-linux-gnu/libz.so.1.2.13: link the machine's zlib instead
# (and never fall back to the static libz.a, which a shared library cannot take).
# (awk reads to the end: an early exit would kill ldconfig with SIGPIPE, which pipefail turns into a failure)
system_zlib=$(ldconfig -p 2>/dev/null | awk '/libz\.so\.1 .*x86-64/ && !found {print $NF; found = 1}')
if [ -n "$system_zlib" ]; then ln -sf "$system_zlib" "$libdir/libz.so"; fi
rm -f "$libdir/libz.a"
export LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PATH=$PATH:$prefix/usr/bin                      # pkg-config and ninja, where the machine lacks them
export PKG_CONFIG_LIBDIR=$libdir/pkgconfig:$prefix/usr/share/pkgconfig
export PKG_CONFIG_SYSROOT_DIR=$prefix                  # the .pc files say prefix=/usr

step "configure and build ($build, PyTorch of $python)"
generator=(); command -v ninja >/dev/null && generator=(-G Ninja)
rm -f "$build/CMakeCache.txt"  # configure afresh (what a previous call found may be gone); objects are reused
failed() { grep -m 20 -E "error|Error|ERROR" "$1" || true; tail -n 30 "$1"; exit 1; }
cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DESFT_PYTHON="$python" \
  -DCMAKE_PREFIX_PATH="$prefix/usr" -DTORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" >"$out/configure.log" 2>&1 \
  || failed "$out/configure.log"
grep -E "esft:|CUDA detected|Found Torch" "$out/configure.log" || true
cmake --build "$build" -j "$(nproc)" >"$out/build.log" 2>&1 || failed "$out/build.log"
tail -n 1 "$out/build.log"
"$build/bin/esft-host" --version

step "parity on the GPU (every family: logits, routing, losses, gradients, ESFT freezing, greedy generation)"
# Case by case, so that one failure (or crash) does not hide the others' figures.
parity=$build/tests/parity_tests
"$parity" --list-test-cases --no-version | grep -v '^\[doctest\]' | grep -v '^=*$' | while IFS= read -r name; do
  filter=${name//,/\\,}
  status=0
  ESFT_TEST_DEVICE=cuda "$parity" -tc="$filter" >"$out/case.log" 2>&1 || status=$?
  case $status in 0) result=passed ;; 77) result="not run (no GPU)" ;; *) result="FAILED (exit $status)" ;; esac
  { grep -E "^parity |ERROR|CRASHED|not run" "$out/case.log" || true; } | sed "s/^/  /" | head -n 20
  echo "$result: $name"
done | tee "$out/parity-cuda.txt"
echo "cases passed on the GPU: $(grep -c '^passed: ' "$out/parity-cuda.txt") of $(grep -cE '^(passed|FAILED)' "$out/parity-cuda.txt")"

step "Qwen3-30B-A3B sizes, 4 layers: statistics pass (8 x 2048) and ESFT step (4 x 2048) next to transformers"
if $dry_run || [ "$device" = cpu ]; then
  echo "skipped without a GPU (3 billion parameters)"
else
  for run in "stats 8" "esft 4"; do
    set -- $run
    "$build/bin/esft-bench-steps" --geometry qwen3-30b-a3b --device cuda --dtype bfloat16 --modes "$1" --batch "$2" \
      --seq 2048 --repeat 3 --python "$python" --json "$out/bench-30b-$1.json" | tee "$out/bench-30b-$1.txt" \
      || echo "esft-bench-steps (qwen3-30b-a3b, $1) FAILED"
  done
fi

step "statistics pass, ESFT, every-expert and full fine-tuning steps next to transformers ($device, $dtype)"
# Each measurement is a process of its own (CUDA start-up included), so two families keep this within minutes.
"$build/bin/esft-bench-steps" --device "$device" --dtype "$dtype" \
  ${BENCH_STEPS:---families qwen3_moe,gpt_oss --batch 8 --seq 1024 --repeat 5} --python "$python" \
  --json "$out/bench-steps.json" | tee "$out/bench-steps.txt" || echo "esft-bench-steps FAILED"

step "every test on the CPU"
ctest --test-dir "$build" -j "$(nproc)" -E 'parity_tests \(cuda\)' 2>&1 | tail -n 4

step "done"
