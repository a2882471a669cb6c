// olmoe against transformers 5.17 (shared/fixtures/hf/olmoe), through the olmoe_select plugin.
#include "family_parity.h"

TEST_CASE("olmoe: checkpoint keys equal the keys the plugin loads") {
  auto f = parity::load("olmoe_select", "olmoe");
  parity::check_key_sets(f);
}

TEST_CASE("olmoe: logits, hidden states, routing and losses match") {
  auto f = parity::load("olmoe_select", "olmoe");
  parity::check_forward(f);
}

TEST_CASE("olmoe: every gradient matches") {
  auto f = parity::load("olmoe_select", "olmoe");
  parity::check_all_gradients(f);
}

TEST_CASE("olmoe: ESFT freezing leaves the trainable experts' gradients unchanged") {
  auto f = parity::load("olmoe_select", "olmoe");
  parity::check_frozen_gradients(f);
}

TEST_CASE("olmoe: greedy generation with the KV cache matches") {
  auto f = parity::load("olmoe_select", "olmoe");
  parity::check_generation(f);
}

TEST_CASE("olmoe: in bfloat16, logits, loss and gradients stay within the bfloat16 tolerances, with each expert kernel") {
  auto f = parity::load("olmoe_select", "olmoe");
  parity::check_bfloat16(f);
}
