// qwen3_moe against transformers 5.17 (shared/fixtures/hf/qwen3_moe: a sharded checkpoint).
#include "esft/error.h"
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

TEST_CASE("qwen3_moe: expert bindings taken before set_trainable_experts refuse to be used") {
  auto f = parity::load("qwen3_moe", "qwen3_moe");
  auto* layer = f.model->moe_layers().front();
  const auto old_bindings = layer->experts().bindings();
  layer->set_trainable_experts({1, 2});
  CHECK_THROWS_WITH_AS(old_bindings.front().value(), doctest::Contains("take the bindings again"), esft::Error);
  const auto fresh = layer->experts().bindings();
  CHECK_NOTHROW(fresh.front().value());
  CHECK_THROWS_WITH_AS(fresh.front().assign(at::zeros({3, 3})), doctest::Contains(fresh.front().key().c_str()), esft::Error);
}

TEST_CASE("qwen3_moe: greedy generation with the KV cache matches") {
  auto f = parity::load("qwen3_moe", "qwen3_moe");
  parity::check_generation(f);
}

TEST_CASE("qwen3_moe: in bfloat16, logits, loss and gradients stay within the bfloat16 tolerances, with each expert kernel") {
  auto f = parity::load("qwen3_moe", "qwen3_moe");
  parity::check_bfloat16(f);
}
