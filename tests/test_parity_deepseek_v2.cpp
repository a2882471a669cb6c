// deepseek_v2 against transformers 5.17 (shared/fixtures/hf/deepseek_v2: multi-head latent attention without a
// q bottleneck, dense layer 0, greedy softmax router, two shared experts).
#include "family_parity.h"

TEST_CASE("deepseek_v2: checkpoint keys equal the keys the plugin loads") {
  auto f = parity::load("deepseek_v2", "deepseek_v2");
  parity::check_key_sets(f);
}

TEST_CASE("deepseek_v2: logits, hidden states, routing and losses match") {
  auto f = parity::load("deepseek_v2", "deepseek_v2");
  parity::check_forward(f);
}

TEST_CASE("deepseek_v2: every gradient matches") {
  auto f = parity::load("deepseek_v2", "deepseek_v2");
  parity::check_all_gradients(f);
}

TEST_CASE("deepseek_v2: ESFT freezing leaves the trainable experts' gradients unchanged") {
  auto f = parity::load("deepseek_v2", "deepseek_v2");
  parity::check_frozen_gradients(f);
}

TEST_CASE("deepseek_v2: greedy generation with the KV cache matches") {
  auto f = parity::load("deepseek_v2", "deepseek_v2");
  parity::check_generation(f);
}

TEST_CASE("deepseek_v2: in bfloat16, logits, loss and gradients stay within the bfloat16 tolerances, with each expert kernel") {
  auto f = parity::load("deepseek_v2", "deepseek_v2");
  parity::check_bfloat16(f);
}

// The paths the main fixture leaves out, against a second reference made with the same transformers
// (scripts/make-fixtures.py, row deepseek_v2_yarn): the q bottleneck (q_lora_rank 12, q_a_layernorm), attention
// biases, YaRN (factor 40) with DeepSeek's mscale 1.0 and mscale_all_dim 0.707 (rotary tables scaled by their
// ratio, attention logits by mscale(40, 0.707)^2), and group_limited_greedy (4 groups, 2 kept) with
// routed_scaling_factor 2.5.
TEST_CASE("deepseek_v2 with q_lora_rank, YaRN mscale and group-limited routing: outputs and gradients match") {
  auto f = parity::load("deepseek_v2", "deepseek_v2_yarn");
  parity::check_key_sets(f);
  parity::check_forward(f);
  parity::check_all_gradients(f);
  parity::check_generation(f);
}
