// tinymoe's checkpoint names (esft writes these checkpoints itself: `esft-host init`).
#include "tinymoe.h"

namespace tinymoe {

const esft::ParamNaming& naming() {
  using esft::Role;
  static const esft::ParamNaming table({
      {Role::EMBED, "wte.weight"},
      {Role::EMBED, "wpe.weight"},
      {Role::LM_HEAD, "lm_head.weight"},
      {Role::FINAL_NORM, "ln_f.*"},
      {Role::ATTENTION, "blocks.{layer}.attn.*"},
      {Role::NORM, "blocks.{layer}.ln1.*"},
      {Role::NORM, "blocks.{layer}.ln2.*"},
      {Role::DENSE_MLP, "blocks.{layer}.ffn.*"},
      {Role::ROUTER, "blocks.{layer}.moe.router.weight"},
      {Role::ROUTER_BIAS, "blocks.{layer}.moe.router.bias"},
      {Role::EXPERT_GATE_UP, "blocks.{layer}.moe.experts.w1"},
      {Role::EXPERT_GATE_UP_BIAS, "blocks.{layer}.moe.experts.b1"},
      {Role::EXPERT_DOWN, "blocks.{layer}.moe.experts.w2"},
      {Role::EXPERT_DOWN_BIAS, "blocks.{layer}.moe.experts.b2"},
  });
  return table;
}

}  // namespace tinymoe
