#!/usr/bin/env bash
# The main job: ESFT end to end on the bundled tiny Qwen3-MoE (3 layers, 8 experts of which 2 per token, random
# weights; tests/data/hf/qwen3_moe) with the bundled byte-level tokenizer (examples/tiny-tokenizer) and the bundled
# smart-home intent task (examples/tiny-task, made by scripts/make-tiny-task.py):
#   routing statistics -> expert selection -> the names that train -> the task metric before -> training ->
#   the metric after, with the adapter -> merge into a full checkpoint -> the metric of the merged model -> the
#   report (report.html: the routing map, the selected experts, the coverage curves and the loss curve).
# Takes about a minute on 2 CPU cores. Outputs stay in $DEMO_OUT (default: a fresh temporary folder). The same
# pipeline as one file: `esft-host run examples/pipeline.toml`.
set -euo pipefail
cd "$(dirname "$0")/.."
host=${BUILD_DIR:-build}/bin/esft-host
task=examples/tiny-task
out=${DEMO_OUT:-$(mktemp -d -t esft-demo.XXXXXX)}
mkdir -p "$out"

step() { printf '\n== %s\n' "$1"; }
run() { printf '$ %s\n' "$*"; "$@"; }

model=examples/tiny-model  # the tiny fixture's files next to the tiny tokenizer's (symbolic links)
step "the base model"
run "$host" info --model "$model" | head -n 4

step "1. routing statistics of the task's training data"
run "$host" scores --model "$model" --data "$task/train.jsonl" --out "$out/scores" --batch-size 8 2>/dev/null

step "2. expert selection: per layer, the experts that carry half of the task's routing"
run "$host" select --scores "$out/scores" --top-p 0.5 --out "$out/expert_config.json"

step "3. the checkpoint tensors that will train, as one anchored regex"
run "$host" params --model "$model" --expert-config "$out/expert_config.json" --format regex

step "4. the task metric before training (exact match of greedy completions on 40 held-out requests)"
run "$host" eval --model "$model" --data "$task/eval.jsonl" --metric exact --enable-thinking false \
  --max-new-tokens 12 2>/dev/null

step "5. ESFT training: only the selected experts learn (settings: $task/train.toml)"
run "$host" train --model "$model" --expert-config "$out/expert_config.json" --data "$task/train.jsonl" \
  --config "$task/train.toml" --out "$out/run"

step "6. the task metric after training, with the adapter"
run "$host" eval --model "$model" --adapter "$out/run/adapter" --data "$task/eval.jsonl" --metric exact \
  --enable-thinking false --max-new-tokens 12 --out "$out/completions.jsonl" 2>/dev/null

step "7. merge the adapter into a complete Hugging Face checkpoint, and evaluate that"
run "$host" merge --model "$model" --adapter "$out/run/adapter" --out "$out/merged"
run "$host" eval --model "$out/merged" --data "$task/eval.jsonl" --metric exact --enable-thinking false \
  --max-new-tokens 12 2>/dev/null

step "8. one page with every picture: routing map, selected experts, coverage curves, loss curve"
run "$host" report "$out"

printf '\noutputs: %s (adapter: run/adapter, merged checkpoint: merged, completions.jsonl, run/metrics.jsonl;\n' "$out"
printf 'pictures: scores/routing.png, expert_config.selection.png, scores.coverage.png, run/loss.png; report.html)\n'
