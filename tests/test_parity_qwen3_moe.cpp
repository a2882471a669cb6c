// qwen3_moe against transformers 5.17 (shared/fixtures/hf/qwen3_moe: a sharded checkpoint).
#include "family_parity.h"

TEST_CASE("qwen3_moe: checkpoint keys equal the keys the plugin loads") {
  auto f = parity::load("qwen3_moe", "qwen3_moe");
  parity::check_key_sets(f);
}

TEST_CASE("qwen3_moe: logits, hidden states, routing and losses match") {
  auto f = parity::load("qwen3_moe", "qwen3_moe");
  parity::check_forward(f);
}

TEST_CASE("qwen3_moe: every gradient matches") {
  auto f = parity::load("qwen3_moe", "qwen3_moe");
  parity::check_all_gradients(f);
}

TEST_CASE("qwen3_moe: ESFT freezing leaves the trainable experts' gradients unchanged") {
  auto f = parity::load("qwen3_moe", "qwen3_moe");
  parity::check_frozen_gradients(f);
}

TEST_CASE("qwen3_moe: greedy generation with the KV cache matches") {
  auto f = parity::load("qwen3_moe", "qwen3_moe");
  parity::check_generation(f);
}
