#include "glm4_moe.h"

namespace glm4_moe {

using esft::Role;

// GLM-4.5 on the Hub: the standard transformers MoE-decoder names plus the router's score-correction bias and the
// ungated shared experts.
const esft::ParamNaming& naming() {
  static const esft::ParamNaming table = esft::hf_moe_decoder_naming({
      {Role::ROUTER_SCORE_CORRECTION, "model.layers.{layer}.mlp.gate.e_score_correction_bias"},
      {Role::SHARED_EXPERT, "model.layers.{layer}.mlp.shared_experts.*"},
  });
  return table;
}

}  // namespace glm4_moe
