#!/usr/bin/env bash
# The main job on the bundled tiny Qwen3-MoE (3 layers, 8 experts, random weights; tests/data/hf/qwen3_moe):
# list plugins, describe the model, run a forward pass that writes logits and routing, and decode greedily.
set -euo pipefail
cd "$(dirname "$0")/.."
host=${BUILD_DIR:-build}/bin/esft-host
model=tests/data/hf/qwen3_moe/model
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
set -x
"$host" plugins
"$host" info --model "$model"
"$host" forward --model "$model" --inputs tests/data/hf/qwen3_moe/reference.safetensors --out "$out/forward.safetensors"
"$host" generate --model "$model" --ids 17,42,99,5,230,8 --max-new-tokens 10
