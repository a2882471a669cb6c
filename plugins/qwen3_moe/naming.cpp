#include "qwen3_moe.h"

namespace qwen3_moe {

// Qwen3-MoE on the Hub: the standard transformers MoE-decoder names, nothing else.
const esft::ParamNaming& naming() {
  static const esft::ParamNaming table = esft::hf_moe_decoder_naming();
  return table;
}

}  // namespace qwen3_moe
