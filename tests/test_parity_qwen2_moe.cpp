// qwen2_moe against transformers 5.17 (shared/fixtures/hf/qwen2_moe: bfloat16 weights, dense layer 1, gated
// shared expert).
#include "family_parity.h"

TEST_CASE("qwen2_moe: checkpoint keys equal the keys the plugin loads") {
  auto f = parity::load("qwen2_moe", "qwen2_moe");
  parity::check_key_sets(f);
}

TEST_CASE("qwen2_moe: logits, hidden states, routing and losses match") {
  auto f = parity::load("qwen2_moe", "qwen2_moe");
  parity::check_forward(f);
}

TEST_CASE("qwen2_moe: every gradient matches") {
  auto f = parity::load("qwen2_moe", "qwen2_moe");
  parity::check_all_gradients(f);
}

TEST_CASE("qwen2_moe: ESFT freezing leaves the trainable experts' gradients unchanged") {
  auto f = parity::load("qwen2_moe", "qwen2_moe");
  parity::check_frozen_gradients(f);
}

TEST_CASE("qwen2_moe: greedy generation with the KV cache matches") {
  auto f = parity::load("qwen2_moe", "qwen2_moe");
  parity::check_generation(f);
}

TEST_CASE("qwen2_moe: in bfloat16, logits, loss and gradients stay within the bfloat16 tolerances, with each expert kernel") {
  auto f = parity::load("qwen2_moe", "qwen2_moe");
  parity::check_bfloat16(f);
}
