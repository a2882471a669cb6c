#!/usr/bin/env bash
# A tour of the model tools on the bundled tiny Qwen3-MoE (3 layers, 8 experts, random weights; tests/data/hf/qwen3_moe):
# list plugins, describe the model, run a forward pass that writes logits and routing, and decode greedily. Then
# the text side with the real Qwen3 tokenizer: tokenize a sentence, render a chat, and prepare the example training
# file (examples/) the way the trainer will see it.
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
tok=tests/data/tokenizers/qwen3.tokenizer.json.gz
"$host" tokenize --tokenizer "$tok" --text "Expert-specialized fine-tuning trains only the experts a task uses."
# A model directory with a real tokenizer: the tiny model's config next to Qwen3's tokenizer files.
mkdir "$out/model"
cp "$model/config.json" "$out/model/"
cp "$tok" "$out/model/tokenizer.json"
cp tests/data/tokenizers/qwen3.tokenizer_config.json "$out/model/tokenizer_config.json"
"$host" chat --model "$out/model" --messages examples/chat.json --add-generation-prompt --enable-thinking false
"$host" data --model "$out/model" --input examples/train.jsonl --seq-length 64 --eval-fraction 0.2 --out "$out/rows.jsonl"
