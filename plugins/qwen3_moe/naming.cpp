#include "qwen3_moe.h"

namespace qwen3_moe {

using esft::Role;

// Checkpoint names of Qwen3-MoE on the Hub (per-expert tensors). Order matters: the first matching rule wins.
const esft::ParamNaming& naming() {
  static const esft::ParamNaming table({
      {Role::EMBED, "model.embed_tokens.weight"},
      {Role::FINAL_NORM, "model.norm.weight"},
      {Role::LM_HEAD, "lm_head.weight"},
      {Role::ATTENTION, "model.layers.{layer}.self_attn.*"},
      {Role::NORM, "model.layers.{layer}.input_layernorm.weight"},
      {Role::NORM, "model.layers.{layer}.post_attention_layernorm.weight"},
      {Role::ROUTER, "model.layers.{layer}.mlp.gate.weight"},
      {Role::EXPERT_GATE, "model.layers.{layer}.mlp.experts.{expert}.gate_proj.weight"},
      {Role::EXPERT_UP, "model.layers.{layer}.mlp.experts.{expert}.up_proj.weight"},
      {Role::EXPERT_DOWN, "model.layers.{layer}.mlp.experts.{expert}.down_proj.weight"},
      {Role::DENSE_MLP, "model.layers.{layer}.mlp.*"},
  });
  return table;
}

}  // namespace qwen3_moe
