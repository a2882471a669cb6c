// gpt_oss against transformers 5.17 (shared/fixtures/hf/gpt_oss: fused interleaved experts with biases, sinks,
// a sliding layer then a full one, YaRN).
#include "family_parity.h"

TEST_CASE("gpt_oss: checkpoint keys equal the keys the plugin loads") {
  auto f = parity::load("gpt_oss", "gpt_oss");
  parity::check_key_sets(f);
}

TEST_CASE("gpt_oss: logits, hidden states, routing and losses match") {
  auto f = parity::load("gpt_oss", "gpt_oss");
  parity::check_forward(f);
}

TEST_CASE("gpt_oss: every gradient matches") {
  auto f = parity::load("gpt_oss", "gpt_oss");
  parity::check_all_gradients(f);
}

TEST_CASE("gpt_oss: ESFT freezing leaves the trainable experts' gradients unchanged") {
  auto f = parity::load("gpt_oss", "gpt_oss");
  parity::check_frozen_gradients(f);
}

TEST_CASE("gpt_oss: greedy generation with the KV cache matches") {
  auto f = parity::load("gpt_oss", "gpt_oss");
  parity::check_generation(f);
}

TEST_CASE("gpt_oss: in bfloat16, logits, loss and gradients stay within the bfloat16 tolerances, with each expert kernel") {
  auto f = parity::load("gpt_oss", "gpt_oss");
  parity::check_bfloat16(f);
}
