#!/usr/bin/env bash
# The GPU check, for a lent CUDA machine (PyTorch with CUDA and transformers installed, no apt, no network), in one
# call of under 10 minutes (the device tool's limit): build what the check runs against the machine's own PyTorch,
# run the parity suite on the GPU family by family (float32 with the fixtures' tolerances and each attention and
# expert kernel; bfloat16 with the tolerances stated in tests/family_parity.h), the bundled demo end to end on the
# GPU, and the benchmarks next to Hugging Face transformers (Qwen3-30B-A3B's sizes at 4 layers, then the small
# configuration), and the multi-process path (c10d with NCCL, one process per GPU, through `esft-host launch`)
# against one process (data parallel and expert parallel), and several devices in one process (the layers spread over
# cuda:0 and the CPU, the only spread one GPU allows) against the GPU alone. Every step runs under what is left of the deadline, so that a slow step costs the later ones their
# time, never the whole call its output. Everything it prints is also saved in $OUT/gpu-check.log, next to the
# parity list and the benchmarks' JSON (five files: the device tool returns at most eight).
# The CPU tests are CI's work; --cpu-tests adds them here too, in whatever time is left.
#
# Before: scripts/fetch-gpu-debs.sh (on a Debian machine) fills .gpu-debs/, which travels with the working tree.
# Without a GPU (a dry run on a development machine) the same steps run, the CUDA parity reports "not run" and the
# benchmarks measure the CPU.
#   usage: scripts/gpu-check.sh [--dry-run] [--cpu-tests] [--only STEP[,STEP...]]
#   --dry-run: the CPU only, with small benchmarks (what to run here before spending device time)
#   --cpu-tests: build everything and run ctest on the CPU at the end
#   --only: after the build, only these of parity, demo, distributed, devices, bench-30b, bench (a second call on a warm
#           machine)
#   environment: GPU_CHECK_PYTHON (python3), DEBS_DIR (.gpu-debs), OUT, BUILD_DIR (build-gpu),
#                GPU_CHECK_SECONDS (the deadline, 560), BENCH_30B_ARGS (added to the Qwen3-30B-A3B runs, e.g.
#                --no-hf), BENCH_STEPS (esft-bench-steps' arguments,
#                "--families qwen3_moe,gpt_oss --modes stats,esft,full,lora --batch 8 --seq 1024 --repeat 5")
set -euo pipefail
cd "$(dirname "$0")/.."
dry_run=false cpu_tests=false only=parity,demo,distributed,devices,bench-30b,bench
while [ $# -gt 0 ]; do
  case $1 in
    --dry-run) dry_run=true ;;
    --cpu-tests) cpu_tests=true ;;
    --only) only=${2:?--only needs a list of steps}; shift ;;
    *) echo "gpu-check: error: unknown argument '$1' (usage: scripts/gpu-check.sh [--dry-run] [--cpu-tests] [--only STEPS])" >&2; exit 2 ;;
  esac
  shift
done
wanted() { [[ ",$only," == *",$1,"* ]]; }
bench_steps=${BENCH_STEPS:---families qwen3_moe,gpt_oss --modes stats,esft,full,lora --batch 8 --seq 1024 --repeat 5}
if $dry_run; then
  export CUDA_VISIBLE_DEVICES=""
  bench_steps=${BENCH_STEPS:---families qwen3_moe --modes stats,esft --batch 1 --seq 64 --repeat 1}
fi
started=$(date +%s)
deadline=$((started + ${GPU_CHECK_SECONDS:-560}))
python=${GPU_CHECK_PYTHON:-$(command -v python3)}
debs=${DEBS_DIR:-.gpu-debs}
build=${BUILD_DIR:-build-gpu}
out=${OUT:-$build/gpu-check}
work=$build/gpu-check-work  # the logs that stay behind (the device tool returns few files)
mkdir -p "$out" "$work"
exec > >(tee "$out/gpu-check.log") 2>&1
step() { printf '\n== [%4ds] %s\n' "$(($(date +%s) - started))" "$*"; }
# within KEEP CMD...: runs CMD for the time left before the deadline less KEEP seconds, kept for the later steps
within() {
  local keep=$1 left
  shift
  left=$((deadline - $(date +%s) - keep))
  if [ "$left" -lt 10 ]; then echo "skipped: the deadline is near"; return 124; fi
  timeout -k 10 "$left" "$@"
}

step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi: no GPU"
echo "$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 2^20}' /proc/meminfo); $(uname -sr); $(c++ --version | head -n 1)"
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

step "configure and build esft-host, the plugins, and parity_tests and esft-bench-steps where asked for ($build, PyTorch of $python)"
generator=(); command -v ninja >/dev/null && generator=(-G Ninja)
rm -f "$build/CMakeCache.txt"  # configure afresh (what a previous call found may be gone); objects are reused
failed() { grep -m 20 -E "error|Error|ERROR" "$1" || true; tail -n 30 "$1"; exit 1; }
cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DESFT_PYTHON="$python" \
  -DCMAKE_PREFIX_PATH="$prefix/usr" -DTORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" >"$work/configure.log" 2>&1 \
  || failed "$work/configure.log"
grep -E "esft:|CUDA detected|Found Torch" "$work/configure.log" || true
targets=(esft-host esft_plugins)  # and what the steps asked for need
if wanted parity; then targets+=(parity_tests); fi
if wanted bench || wanted bench-30b; then targets+=(esft-bench-steps); fi
if $cpu_tests; then targets=(all); fi
within 240 cmake --build "$build" -j "$(nproc)" --target "${targets[@]}" >"$work/build.log" 2>&1 || failed "$work/build.log"
tail -n 1 "$work/build.log"
"$build/bin/esft-host" --version
# LibTorch's wheel exports a copy of std::filesystem: libstdc++'s own references must bind to libstdc++ (on the lent
# Ubuntu machine they bound to libtorch_cpu, and code that throws filesystem_error crashed).
echo "esft-host's libraries: $(readelf -d "$build/bin/esft-host" | awk '/NEEDED/ {printf "%s ", $NF}')"
echo "its link line's libstdc++: $(ninja -C "$build" -t commands esft-host 2>/dev/null | tail -n 1 | grep -oE '(-Wl,|-Xlinker )?[^ ]*(push-state|lstdc)[^ ]*' | tr '\n' ' ')"
rm -f "$work"/ld-bindings.*
LD_DEBUG=bindings LD_DEBUG_OUTPUT=$work/ld-bindings "$build/bin/esft-host" --version >/dev/null 2>&1 || true
cat "$work"/ld-bindings.* 2>/dev/null | grep "libstdc++.so.6 \[0\] to .*filesystem_errorE'" | sed -E 's/^ *[0-9]+: *//' | sort -u | head -n 4
# Does this toolchain honour the option for a program of one line? (On the lent Ubuntu machine esft-host's list had no
# libstdc++ although its link line carried the option.)
libstdcxx=$(c++ -print-file-name=libstdc++.so.6)
printf '#include <iostream>\nint main() { std::cout << 1; }\n' >"$work/one-line.cpp"
c++ -Wl,--push-state,--no-as-needed,-lstdc++,--pop-state "$work/one-line.cpp" -o "$work/one-line" 2>&1 | head -n 3
echo "a one-line program's libraries: $(readelf -d "$work/one-line" 2>/dev/null | awk '/NEEDED/ {printf "%s ", $NF}'); $(ld --version | head -n 1)"
# Which libraries load, in order (a preloaded libtorch_cpu would explain those bindings).
echo "LD_PRELOAD='${LD_PRELOAD:-}' /etc/ld.so.preload: '$(cat /etc/ld.so.preload 2>/dev/null | tr '\n' ' ')'"
rm -f "$work"/ld-files.*
LD_DEBUG=files LD_DEBUG_OUTPUT=$work/ld-files "$build/bin/esft-host" --version >/dev/null 2>&1 || true
echo "load order: $(cat "$work"/ld-files.* 2>/dev/null | sed -nE 's/.*file=([^ ]+) +\[0\]; +needed by.*/\1/p' | head -n 10 | xargs -n 1 basename 2>/dev/null | tr '\n' ' ')"

if wanted parity; then
step "parity on the GPU (every family: logits, routing, losses, gradients, ESFT freezing, greedy generation, bf16)"
# A process per family (CUDA starts once per process); a family that fails is run again case by case, so that one
# failure or crash does not hide the other cases' figures.
parity=$build/tests/parity_tests
cases=$("$parity" --list-test-cases --no-version | grep -v '^\[doctest\]' | grep -v '^=*$')
families=$(sed -E 's/^([a-z0-9_]+).*/\1/' <<<"$cases" | sort -u)
run_cases() {  # run_cases FILTER LABEL: one parity_tests process on the GPU, its figures, one result line
  local status=0 result
  within 200 env ESFT_TEST_DEVICE=cuda "$parity" -tc="$1" >"$work/case.log" 2>&1 || status=$?
  case $status in 0) result=passed ;; 77) result="not run (no GPU)" ;; 124) result="TIMED OUT" ;; *) result="FAILED (exit $status)" ;; esac
  { grep -E "^parity |ERROR|CRASHED|not run|test cases" "$work/case.log" || true; } | sed "s/^/  /" | head -n 60
  echo "$result: $2"
  [ "$status" = 0 ] || [ "$status" = 77 ]
}
for family in $families; do
  if ! run_cases "$family*" "$family (every case)"; then
    grep "^$family" <<<"$cases" | while IFS= read -r name; do
      run_cases "${name//,/\\,}" "$name" \
        || { LD_PRELOAD=$libstdcxx run_cases "${name//,/\\,}" "$name, again with libstdc++ preloaded" || true; }
    done
  fi
done | tee "$out/parity-cuda.txt"
echo "families passed on the GPU: $(grep -c '^passed: .*(every case)' "$out/parity-cuda.txt") of $(wc -w <<<"$families")"
fi

if wanted demo; then
step "the bundled demo end to end on the $device (--device auto: scores, select, eval, train, merge)"
rm -rf "$work/demo"
# (awk, not head: an early exit would kill the demo with SIGPIPE, which pipefail reports as its failure)
BUILD_DIR=$build DEMO_OUT=$work/demo within 170 bash scripts/demo.sh 2>&1 | awk '/^==|^exact|^cost|^eval at|error/ && n++ < 40' \
  || echo "the demo FAILED"
fi

if wanted distributed; then
gpus=1
if [ "$device" = cuda ]; then gpus=$("$python" -c 'import torch; print(torch.cuda.device_count())'); fi
step "multi-process path: $gpus process(es) through esft-host launch ($([ "$device" = cuda ] && echo NCCL || echo Gloo)) against one process"
dist=$work/distributed
rm -rf "$dist"; mkdir -p "$dist/model"
cp tests/data/hf/qwen3_moe/model/* examples/tiny-tokenizer/tokenizer.json examples/tiny-tokenizer/tokenizer_config.json "$dist/model/"
printf '{"experts": {"0": [0, 3], "1": [1, 2, 5], "2": [4]}, "shared_experts": false, "non_expert_modules": false}\n' >"$dist/experts.json"
printf 'learning_rate = 1e-4\nsteps = 4\nbatch_size = %d\ngradient_accumulation_steps = 2\nseq_length = 128\neval_steps = 0\nsave_steps = 2\n' \
  "$((2 * gpus))" >"$dist/train.toml"
host=$build/bin/esft-host
data=examples/tiny-task/train.jsonl
dist_run() {  # dist_run NAME NPROC ARGS...: one process (NPROC 0) or NPROC through launch, in float32
  local name=$1 nproc=$2; shift 2
  local cmd=("$host" --device "$device" --dtype float32 "$@")
  if [ "$nproc" -gt 0 ]; then cmd=("$host" launch --nproc "$nproc" -- "${cmd[@]}"); fi
  within 60 "${cmd[@]}" >"$dist/$name.log" 2>&1 \
    || { echo "$name FAILED:"; grep -m 6 -iE "error|terminate|what|exception|warn" "$dist/$name.log"; tail -n 3 "$dist/$name.log"; }
}
for n in 0 "$gpus"; do
  dist_run "scores-$n" "$n" scores --model "$dist/model" --data "$data" --out "$dist/scores-$n" --batch-size 3 --n-sample-tokens 1500
  dist_run "train-$n" "$n" train --model "$dist/model" --expert-config "$dist/experts.json" --data "$data" \
    --config "$dist/train.toml" --out "$dist/train-$n"
done
# Expert parallelism over the same processes (world size 1 on one GPU: the exchanges through the same code).
dist_run "train-ep-$gpus" "$gpus" train --model "$dist/model" --expert-config "$dist/experts.json" --data "$data" \
  --config "$dist/train.toml" --out "$dist/train-ep-$gpus" --expert-parallel
grep -h "processes (" "$dist"/*.log | sort -u | head -n 2
"$python" - "$dist" "$gpus" <<'PY' || echo "the comparison FAILED"
import json, sys, torch
from safetensors.torch import load_file
d, n = sys.argv[1], sys.argv[2]
a, b = json.load(open(f"{d}/scores-0/scores.json")), json.load(open(f"{d}/scores-{n}/scores.json"))
counts = all(a["layers"][l]["token_count"] == b["layers"][l]["token_count"] for l in a["layers"])
gates = max(abs(x - y) for l in a["layers"] for x, y in zip(a["layers"][l]["gate_sum"], b["layers"][l]["gate_sum"]))
print(f"scores.json, 1 process vs {n} through c10d: counts {'identical' if counts else 'DIFFER'}, gate sums max diff {gates:.3g}")
x, y = load_file(f"{d}/train-0/adapter/model.safetensors"), load_file(f"{d}/train-{n}/adapter/model.safetensors")
diff = max((x[k].double() - y[k].double()).abs().max().item() for k in x)
m0 = [json.loads(l) for l in open(f"{d}/train-0/metrics.jsonl") if '"loss"' in l]
m1 = [json.loads(l) for l in open(f"{d}/train-{n}/metrics.jsonl") if '"loss"' in l]
print(f"ESFT adapter after 4 steps, 1 process vs {n}: max diff {diff:.3g}; losses {[round(m['loss'], 6) for m in m0]} vs "
      f"{[round(m['loss'], 6) for m in m1]}; comm bytes per step {m1[-1].get('comm_bytes', 0)}")
z = load_file(f"{d}/train-ep-{n}/adapter/model.safetensors")
me = [json.loads(l) for l in open(f"{d}/train-ep-{n}/metrics.jsonl") if '"loss"' in l]
diff = max((x[k].double() - z[k].double()).abs().max().item() for k in x)
print(f"expert-parallel ESFT over {n}: adapter max diff {diff:.3g} from 1 process; comm bytes per step {me[-1].get('comm_bytes', 0)}")
PY
fi

if wanted devices; then
spread=cpu,cpu
if [ "$device" = cuda ]; then spread=cuda:0,cpu; fi
step "several devices in one process: the layers spread over $spread against $device alone (scores, greedy generation)"
devs=$work/devices
rm -rf "$devs"; mkdir -p "$devs/model"
cp tests/data/hf/qwen3_moe/model/* examples/tiny-tokenizer/tokenizer.json examples/tiny-tokenizer/tokenizer_config.json "$devs/model/"
for d in "$device" "$spread"; do
  within 60 "$build/bin/esft-host" --device "$d" --dtype float32 scores --model "$devs/model" \
    --data examples/tiny-task/train.jsonl --out "$devs/scores-$d" --batch-size 3 --n-sample-tokens 1500 >"$devs/scores-$d.log" 2>&1 \
    || { echo "scores on $d FAILED:"; tail -n 5 "$devs/scores-$d.log"; }
  within 60 "$build/bin/esft-host" --device "$d" --dtype float32 generate --model "$devs/model" --ids 1,2,3,4,5 \
    --max-new-tokens 24 >"$devs/generate-$d.txt" 2>"$devs/generate-$d.log" \
    || { echo "generate on $d FAILED:"; tail -n 5 "$devs/generate-$d.log"; }
done
grep -h "spread over" "$devs"/*.log | sort -u | head -n 1
cmp -s "$devs/generate-$device.txt" "$devs/generate-$spread.txt" && echo "greedy generation: identical on $spread" \
  || { echo "greedy generation DIFFERS on $spread:"; cat "$devs/generate-$device.txt" "$devs/generate-$spread.txt"; }
"$python" - "$devs/scores-$device/scores.json" "$devs/scores-$spread/scores.json" <<'PY' || echo "the comparison FAILED"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
counts = all(a["layers"][l]["token_count"] == b["layers"][l]["token_count"] for l in a["layers"])
gates = max(abs(x - y) for l in a["layers"] for x, y in zip(a["layers"][l]["gate_sum"], b["layers"][l]["gate_sum"]))
print(f"scores.json: counts {'identical' if counts else 'DIFFER'}, gate sums max diff {gates:.3g}")
PY
fi

if wanted bench-30b; then
step "Qwen3-30B-A3B sizes, 4 layers: statistics pass (8 x 2048) and ESFT step (4 x 2048) next to transformers"
if $dry_run || [ "$device" = cpu ]; then
  echo "skipped without a GPU (3 billion parameters)"
else
  later=0; if wanted bench; then later=45; fi  # seconds kept for the small configuration after these
  for run in "stats 8 $((later + 50))" "esft 4 $((later + 5))"; do  # mode, batch, seconds kept for what follows
    set -- $run
    within "$3" "$build/bin/esft-bench-steps" --geometry qwen3-30b-a3b --device cuda --dtype bfloat16 --modes "$1" \
      --batch "$2" --seq 2048 --repeat 3 --python "$python" ${BENCH_30B_ARGS:-} --json "$out/bench-30b-$1.json" \
      || echo "esft-bench-steps (qwen3-30b-a3b, $1) FAILED or was cut off"
  done
fi
fi

if wanted bench; then
step "statistics pass, ESFT, full fine-tuning and LoRA steps next to transformers ($device, $dtype)"
# Each measurement is a process of its own (CUDA start-up included); rows print as they are measured.
# shellcheck disable=SC2086  # the arguments are meant to split
within 5 "$build/bin/esft-bench-steps" --device "$device" --dtype "$dtype" $bench_steps --python "$python" \
  --json "$out/bench-steps.json" || echo "esft-bench-steps FAILED or was cut off"
fi

if $cpu_tests; then
  step "every test on the CPU"
  within 0 ctest --test-dir "$build" -j "$(nproc)" -E 'parity_tests \(cuda\)' 2>&1 | tail -n 8
fi

step "done"
