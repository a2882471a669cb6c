#!/usr/bin/env bash
# ctest: trains a LoRA adapter on every kind of target (linear layers, routers, routed experts) of the bundled tiny
# qwen3_moe with esft-host, merges it, and has scripts/check-lora-against-peft.py compare esft, PEFT and
# transformers on it. Exit 77 (skipped) without the project's .venv.
set -euo pipefail
host=$1 source_dir=$2
python=$source_dir/.venv/bin/python
if [ ! -x "$python" ]; then
  echo "skipped: no $python (scripts/install-deps.sh makes it)"
  exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/lora.toml" <<'TOML'
steps = 8
batch_size = 2
gradient_accumulation_steps = 1
seq_length = 128
learning_rate = 0.02
lora_rank = 4
lora_targets = ["all-linear", "gate", "experts"]
TOML
model=$source_dir/examples/tiny-model
"$host" train --method lora --model "$model" --data "$source_dir/examples/train.jsonl" --config "$tmp/lora.toml" \
  --out "$tmp/run" > "$tmp/train.log" 2>&1 || { cat "$tmp/train.log"; exit 1; }
"$host" merge --model "$model" --adapter "$tmp/run/adapter" --out "$tmp/merged" > /dev/null
"$python" -W ignore "$source_dir/scripts/check-lora-against-peft.py" --model "$model" --adapter "$tmp/run/adapter" \
  --esft "$host" --merged "$tmp/merged"
