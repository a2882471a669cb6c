// Checkpoint names: transformers' decoder names (embedding, norms, attention, lm_head), and each layer's MLP.
#include "llama.h"

namespace llama {

const esft::ParamNaming& naming() {
  static const esft::ParamNaming table = [] {
    auto rules = esft::hf_decoder_common_rules();
    rules.push_back({esft::Role::DENSE_MLP, "model.layers.{layer}.mlp.*"});
    return esft::ParamNaming(std::move(rules));
  }();
  return table;
}

}  // namespace llama
