#!/usr/bin/env bash
# ctest: trains LoRA adapters on every kind of target (linear layers, routers, routed experts) of the bundled tiny
# qwen3_moe and of the tiny deepseek_v2 (multi-head latent attention, shared experts left out: PEFT 0.21 takes
# their gate_proj/up_proj/down_proj names for routed experts) with esft-host, merges them, and has
# scripts/check-lora-against-peft.py compare esft, PEFT and transformers on each. Exit 77 (skipped) without the
# project's .venv.
set -euo pipefail
host=$1 source_dir=$2
python=$source_dir/.venv/bin/python
if [ ! -x "$python" ]; then
  echo "skipped: no $python (scripts/install-deps.sh makes it)"
  exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
check() {  # name, model, data, targets
  local name=$1 model=$2 data=$3 targets=$4
  cat > "$tmp/$name.toml" <<TOML
steps = 8
batch_size = 2
gradient_accumulation_steps = 1
seq_length = 128
learning_rate = 0.02
lora_rank = 4
lora_targets = $targets
TOML
  echo "== $name: $targets"
  "$host" train --method lora --model "$model" --data "$data" --config "$tmp/$name.toml" --out "$tmp/$name" \
    > "$tmp/$name.log" 2>&1 || { cat "$tmp/$name.log"; exit 1; }
  "$host" merge --model "$model" --adapter "$tmp/$name/adapter" --out "$tmp/$name-merged" > /dev/null
  "$python" -W ignore "$source_dir/scripts/check-lora-against-peft.py" --model "$model" --adapter "$tmp/$name/adapter" \
    --esft "$host" --merged "$tmp/$name-merged"
}
examples=$source_dir/examples
check qwen3_moe "$examples/tiny-model" "$examples/train.jsonl" '["all-linear", "gate", "experts"]'
check deepseek_v2 "$examples/tiny-deepseek-v2/model" "$examples/tiny-deepseek-v2/task/train.jsonl" \
  '["q_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj", "gate", "experts"]'
