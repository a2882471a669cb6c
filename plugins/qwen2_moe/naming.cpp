#include "qwen2_moe.h"

namespace qwen2_moe {

using esft::Role;

// Qwen1.5/Qwen2-MoE on the Hub: the standard transformers MoE-decoder names plus the gated shared expert.
const esft::ParamNaming& naming() {
  static const esft::ParamNaming table = esft::hf_moe_decoder_naming({
      {Role::SHARED_EXPERT_GATE, "model.layers.{layer}.mlp.shared_expert_gate.weight"},
      {Role::SHARED_EXPERT, "model.layers.{layer}.mlp.shared_expert.*"},
  });
  return table;
}

}  // namespace qwen2_moe
