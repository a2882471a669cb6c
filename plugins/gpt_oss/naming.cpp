#include "gpt_oss.h"

namespace gpt_oss {

using esft::Role;

// gpt-oss on the Hub: the router is `mlp.router` (with a bias) and the experts of a layer are fused tensors.
// The released checkpoints store gate_up_proj and down_proj as MXFP4 `_blocks`/`_scales` pairs, which the loader
// presents under these same names.
const esft::ParamNaming& naming() {
  static const esft::ParamNaming table = [] {
    auto rules = esft::hf_decoder_common_rules();
    rules.insert(rules.end(), {
        {Role::ROUTER, "model.layers.{layer}.mlp.router.weight"},
        {Role::ROUTER_BIAS, "model.layers.{layer}.mlp.router.bias"},
        {Role::EXPERT_GATE_UP, "model.layers.{layer}.mlp.experts.gate_up_proj"},
        {Role::EXPERT_GATE_UP_BIAS, "model.layers.{layer}.mlp.experts.gate_up_proj_bias"},
        {Role::EXPERT_DOWN, "model.layers.{layer}.mlp.experts.down_proj"},
        {Role::EXPERT_DOWN_BIAS, "model.layers.{layer}.mlp.experts.down_proj_bias"},
                              });
    return esft::ParamNaming(std::move(rules));
  }();
  return table;
}

}  // namespace gpt_oss
