// Checkpoint names, as data: each role (what a tensor is) maps to a pattern with {layer} and {expert}. ESFT's
// selection, freezing, adapters and merging all ask this table, so they work for the family unchanged.
#include "mixtral.h"

namespace mixtral {

const esft::ParamNaming& naming() {
  static const esft::ParamNaming table = [] {
    auto rules = esft::hf_decoder_common_rules();  // embedding, norms, attention, lm_head
    const std::string moe = "model.layers.{layer}.block_sparse_moe.";
    rules.push_back({esft::Role::ROUTER, moe + "gate.weight"});
    rules.push_back({esft::Role::EXPERT_GATE, moe + "experts.{expert}.w1.weight"});
    rules.push_back({esft::Role::EXPERT_DOWN, moe + "experts.{expert}.w2.weight"});
    rules.push_back({esft::Role::EXPERT_UP, moe + "experts.{expert}.w3.weight"});
    return esft::ParamNaming(std::move(rules));
  }();
  return table;
}

}  // namespace mixtral
