#!/usr/bin/env bash
# The same ESFT run as esft-8gpu.slurm (Qwen3-30B-A3B, training with expert parallelism over the 8) on a machine of 8 GPUs without SLURM, started by PyTorch's torchrun (in the
# project's .venv). `--no-python` makes torchrun start esft-host itself; each process reads RANK, WORLD_SIZE,
# LOCAL_RANK, MASTER_ADDR and MASTER_PORT, as `esft-host launch --nproc 8 -- esft-host ...` would set them too.
#
#   examples/multi-gpu/torchrun-8gpu.sh
#   NPROC=4 MODEL=/data/Qwen3-30B-A3B DATA=my-task.jsonl OUT=runs/my-task examples/multi-gpu/torchrun-8gpu.sh
set -euo pipefail
ESFT_HOST=${ESFT_HOST:-build/bin/esft-host}
TORCHRUN=${TORCHRUN:-.venv/bin/torchrun}
NPROC=${NPROC:-8}
MODEL=${MODEL:-models/Qwen3-30B-A3B}
DATA=${DATA:-examples/tiny-task/train.jsonl}
OUT=${OUT:-runs/esft-torchrun}
TRAIN_CONFIG=${TRAIN_CONFIG:-}
DEVICE=${DEVICE:-cuda}
TOP_P=${TOP_P:-0.2}
EXPERT_PARALLEL=${EXPERT_PARALLEL---expert-parallel}  # NPROC must divide the experts per layer (128)
MERGE_DEVICE=${MERGE_DEVICE:-cpu}
mkdir -p "$OUT"
run=("$TORCHRUN" --standalone --nproc-per-node "$NPROC" --no-python "$ESFT_HOST" --device "$DEVICE" --dist-timeout 1800)

"${run[@]}" scores --model "$MODEL" --data "$DATA" --out "$OUT/scores" --batch-size 8
"$ESFT_HOST" select --scores "$OUT/scores" --top-p "$TOP_P" --out "$OUT/expert_config.json"
"${run[@]}" train --model "$MODEL" --expert-config "$OUT/expert_config.json" --data "$DATA" --out "$OUT/train" \
  ${TRAIN_CONFIG:+--config "$TRAIN_CONFIG"} $EXPERT_PARALLEL
"$ESFT_HOST" --device "$MERGE_DEVICE" merge --model "$MODEL" --adapter "$OUT/train/adapter" --out "$OUT/merged"
echo "torchrun-8gpu: $OUT/merged"
