#include "deepseek_v2.h"

namespace deepseek_v2 {

// DeepSeek-V2 on the Hub: the standard transformers MoE-decoder names (the latent attention's tensors are all under
// `self_attn`), plus the ungated shared experts.
const esft::ParamNaming& naming() {
  static const esft::ParamNaming table = esft::hf_moe_decoder_naming({
      {esft::Role::SHARED_EXPERT, "model.layers.{layer}.mlp.shared_experts.*"},
  });
  return table;
}

}  // namespace deepseek_v2
