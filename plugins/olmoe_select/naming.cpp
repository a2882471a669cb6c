#include "olmoe.h"

namespace olmoe {

// OLMoE on the Hub: the standard transformers MoE-decoder names (q_norm/k_norm fall under self_attn).
const esft::ParamNaming& naming() {
  static const esft::ParamNaming table = esft::hf_moe_decoder_naming();
  return table;
}

}  // namespace olmoe
