#!/usr/bin/env bash
# Select-MoE end to end on 2 CPU cores (shared/spec/VARIANTS.md §1), about a minute after the build:
#   0. a tiny OLMoE (examples/select-moe/olmoe.toml) trained from scratch on the bundled TinyStories;
#   1. converted to Select-MoE (2 trash cans per layer); its routers pre-trained on a mix of real stories and
#      deliberately corrupted ones (examples/select-moe/mix.jsonl.gz: words shuffled, or cut to their first 30%);
#   2. every record of the mix scored, the best quarter kept; the share of real stories among them against the mix's;
#   3. ESFT of the base model on the kept records (scores, select, train);
#   4. multiple-choice accuracy (ARC-Easy, acc and acc_norm) before and after.
# Usage: bash scripts/select-moe-demo.sh [OUT_DIR]   (default esft-runs/select-moe-demo; it is replaced)
set -euo pipefail
cd "$(dirname "$0")/.."
host=build/bin/esft-host
[[ -x $host ]] || { echo "select-moe-demo: build first (bash scripts/build.sh)" >&2; exit 1; }
out=${1:-esft-runs/select-moe-demo}
ex=examples/select-moe
rm -rf "$out"
mkdir -p "$out"
step() { printf '\n== %s\n' "$*"; }
kinds() {  # how many kept records of each kind, from the ids that make-select-moe-mix.py gave them
  for k in good shuffled truncated; do
    printf '%s %s  ' "$k" "$(grep -cE "\"id\": ?\"$k-" "$1" || true)"
  done
  echo
}

step "0. a tiny OLMoE from scratch on TinyStories"
$host --plugin olmoe_select init --config $ex/olmoe.toml --tokenizer examples/tinystories-tokenizer --out "$out/init"
$host train --method pretrain --model "$out/init" --data data/tinystories/train.jsonl.gz \
  --eval-data data/tinystories/valid.jsonl.gz --config $ex/pretrain.toml --out "$out/pretrain" | tail -4
base="$out/pretrain/model"

step "1. convert to Select-MoE, pre-train the routers on the mix"
$host convert --model "$base" --out "$out/select"
$host train --method router --model "$out/select" --data $ex/mix.jsonl.gz --config $ex/router.toml \
  --out "$out/router" | tail -3

step "2. score the mix, keep the best quarter"
$host select-data --model "$out/select" --adapter "$out/router/adapter" --data $ex/mix.jsonl.gz --fraction 0.25 \
  --out "$out/selected" 2>/dev/null | tail -3
printf 'the mix:      '; zcat $ex/mix.jsonl.gz > "$out/mix.jsonl"; kinds "$out/mix.jsonl"
printf 'the kept:     '; kinds "$out/selected/selected_data.jsonl"
$host select-data --model "$out/select" --data $ex/mix.jsonl.gz --fraction 0.25 --out "$out/selected-untrained" \
  >/dev/null 2>&1
printf 'untrained routers would keep: '; kinds "$out/selected-untrained/selected_data.jsonl"

step "3. ESFT of the base model on the kept records"
$host scores --model "$base" --data "$out/selected/selected_data.jsonl" --out "$out/scores" 2>/dev/null | tail -1
$host select --scores "$out/scores/scores.json" --top-p 0.3 --out "$out/expert_config.json" | tail -1
$host train --model "$base" --expert-config "$out/expert_config.json" --data "$out/selected/selected_data.jsonl" \
  --config $ex/finetune.toml --out "$out/finetune" | tail -2

step "4. ARC-Easy (first 300 questions), before and after"
arc=data/arc_easy/test.jsonl.gz
printf 'before: '; $host eval --model "$base" --data $arc --metric mc --limit 300 --result "$out/mc_before.json" 2>/dev/null
printf 'after:  '; $host eval --model "$base" --adapter "$out/finetune/adapter" --data $arc --metric mc --limit 300 \
  --result "$out/mc_after.json" 2>/dev/null
echo
echo "select-moe-demo: done; everything is under $out"
