#!/usr/bin/env bash
# Data-parallel ESFT training on this machine: the same run (global batch, steps, data) as 1, 2, ... processes through
# `esft-host launch` (Gloo on the CPU; NCCL, one GPU per process, with --device cuda), each process with its share of
# the cores. Prints tokens/s of the whole group, seconds per step, the bytes each rank sends per step (the trainable
# experts' gradients and a small record; with --expert-parallel, the token rows exchanged with the experts' ranks
# instead of most gradients) and the speed-up over one process, all measured in one run; next to them, transformers
# on the same configuration and global batch (bench/hf_steps.py --mode esft: one process, then torchrun with
# DistributedDataParallel, as transformers' Trainer runs data parallel), unless --no-hf.
# The model is a random qwen3_moe (hidden 256, 4 layers, 32 experts of 256, top-4; `esft-host init`) with 8 of its 32
# experts per layer trainable, on the bundled task packed into rows of 256 tokens.
#   usage: bench/data_parallel.sh [--nproc 1,2] [--steps 8] [--batch 8] [--device cpu] [--expert-parallel] [--no-hf]
#   environment: ESFT_HOST (build/bin/esft-host)
set -euo pipefail
cd "$(dirname "$0")/.."
nprocs=1,2 steps=8 batch=8 device=cpu expert_parallel="" hf=1
while [ $# -gt 0 ]; do
  case $1 in
    --nproc) nprocs=$2; shift ;;
    --steps) steps=$2; shift ;;
    --batch) batch=$2; shift ;;
    --device) device=$2; shift ;;
    --expert-parallel) expert_parallel=--expert-parallel ;;
    --no-hf) hf=0 ;;
    *) echo "data_parallel: error: unknown argument '$1' (usage: bench/data_parallel.sh [--nproc 1,2] [--steps N] [--batch B] [--device cpu|cuda] [--expert-parallel] [--no-hf])" >&2; exit 2 ;;
  esac
  shift
done
host=${ESFT_HOST:-build/bin/esft-host}
[ -x "$host" ] || { echo "data_parallel: error: $host is missing; run scripts/build.sh" >&2; exit 1; }
python=.venv/bin/python torchrun=.venv/bin/torchrun
if [ "$hf" = 1 ] && [ ! -x "$torchrun" ]; then
  echo "data_parallel: error: $torchrun is missing (transformers' side); run scripts/install-deps.sh, or pass --no-hf" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/model.toml" <<'TOML'
hidden_size = 256
intermediate_size = 512
moe_intermediate_size = 256
num_hidden_layers = 4
num_attention_heads = 4
num_key_value_heads = 2
head_dim = 64
num_experts = 32
num_experts_per_tok = 4
norm_topk_prob = true
max_position_embeddings = 4096
rms_norm_eps = 1e-6
rope_theta = 1000000.0
tie_word_embeddings = false
TOML
"$host" --plugin qwen3_moe init --config "$work/model.toml" --tokenizer examples/tiny-tokenizer --out "$work/model" >/dev/null
cp examples/tiny-tokenizer/tokenizer_config.json "$work/model/"
python3 - "$work/experts.json" <<'PY'
import json, sys
json.dump({"experts": {str(l): list(range(l, 32, 4)) for l in range(4)}, "shared_experts": False,
           "non_expert_modules": False}, open(sys.argv[1], "w"))
PY
printf 'learning_rate = 1e-4\nsteps = %d\nbatch_size = %d\ngradient_accumulation_steps = 1\nseq_length = 256\neval_steps = 0\nsave_steps = %d\neval_fraction = 0\n' \
  "$steps" "$batch" "$steps" >"$work/train.toml"
cores=$(nproc)
echo "machine: $(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2; exit}'), $cores cores; device $device; $("$host" --version | head -n 1)"
echo "model: qwen3_moe hidden 256, 4 layers, 32 experts of 256, top-4; ESFT with 8 of 32 experts per layer; global batch $batch x 256 tokens, $steps steps (the first not timed)${expert_parallel:+; expert parallelism over the processes}"
echo
echo "| processes | threads each | tokens/s (all ranks) | s/step | bytes sent/step/rank | speed-up | transformers tokens/s | esft / transformers |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
base=""
IFS=, read -ra counts <<<"$nprocs"
for n in "${counts[@]}"; do
  threads=$(( cores / n > 0 ? cores / n : 1 ))
  out=$work/run-$n
  cmd=("$host" --device "$device" --dtype float32 train --model "$work/model" --expert-config "$work/experts.json"
       --data examples/tiny-task/train.jsonl --config "$work/train.toml" --out "$out")
  if [ "$n" -gt 1 ]; then cmd=("$host" launch --nproc "$n" -- "${cmd[@]}" $expert_parallel); fi
  OMP_NUM_THREADS=$threads "${cmd[@]}" >"$work/log-$n" 2>&1 || { tail -n 20 "$work/log-$n"; echo "data_parallel: $n processes FAILED" >&2; exit 1; }
  read -r tps sps bytes < <(python3 - "$out/metrics.jsonl" <<'PY'
import json, sys
steps = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l][1:]
tokens = sum(s["tokens"] for s in steps)
seconds = sum(s["tokens"] / s["tokens_per_s"] for s in steps)
print(f"{tokens / seconds:.0f} {seconds / len(steps):.3f} {steps[-1].get('comm_bytes', 0)}")
PY
)
  [ -n "$base" ] || base=$tps
  speedup=$(python3 -c "print(f'{$tps / $base:.2f}')")
  hf_tps="-" ratio="-"
  if [ "$hf" = 1 ]; then
    hf_args=(bench/hf_steps.py --config "$work/model/config.json" --mode esft --batch "$batch" --seq 256 --repeat 3
             --threads "$threads" --esft-experts 8 --device "$device")
    if [ "$n" -gt 1 ]; then hf_cmd=("$torchrun" --standalone --nproc-per-node "$n" "${hf_args[@]}"); else hf_cmd=("$python" "${hf_args[@]}"); fi
    OMP_NUM_THREADS=$threads "${hf_cmd[@]}" >"$work/hf-$n" 2>&1 || { tail -n 20 "$work/hf-$n"; echo "data_parallel: transformers with $n processes FAILED" >&2; exit 1; }
    hf_tps=$(grep '^{' "$work/hf-$n" | tail -n 1 | python3 -c 'import json, sys; print(round(json.load(sys.stdin)["tokens_per_s"]))')
    ratio=$(python3 -c "print(f'{$tps / $hf_tps:.2f}x')")
  fi
  echo "| $n | $threads | $tps | $sps | $bytes | ${speedup}x | $hf_tps | $ratio |"
done
