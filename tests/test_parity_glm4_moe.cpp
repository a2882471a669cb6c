// glm4_moe against transformers 5.17 (shared/fixtures/hf/glm4_moe: dense layer 0, sigmoid group-limited router
// with a non-zero e_score_correction_bias, shared expert, q/k norm, partial rotary).
#include "family_parity.h"

TEST_CASE("glm4_moe: checkpoint keys equal the keys the plugin loads") {
  auto f = parity::load("glm4_moe", "glm4_moe");
  parity::check_key_sets(f);
}

TEST_CASE("glm4_moe: logits, hidden states, routing and losses match") {
  auto f = parity::load("glm4_moe", "glm4_moe");
  parity::check_forward(f);
}

TEST_CASE("glm4_moe: every gradient matches") {
  auto f = parity::load("glm4_moe", "glm4_moe");
  parity::check_all_gradients(f);
}

TEST_CASE("glm4_moe: ESFT freezing leaves the trainable experts' gradients unchanged") {
  auto f = parity::load("glm4_moe", "glm4_moe");
  parity::check_frozen_gradients(f);
}

TEST_CASE("glm4_moe: greedy generation with the KV cache matches") {
  auto f = parity::load("glm4_moe", "glm4_moe");
  parity::check_generation(f);
}
