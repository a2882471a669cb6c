#include "esft/error.h"
#include "esft/nn/decoder_config.h"
#include "glm4_moe.h"

namespace glm4_moe {

esft::nn::DecoderSpec decoder_spec(const esft::ModelConfig& c) {
  auto s = esft::nn::common_decoder_spec(c, "glm4_moe");
  // Glm4MoeConfig's defaults where real configs omit a key: partial rotary 0.5, renormalised top-k.
  if (!c.has("partial_rotary_factor") && !c.rope.parameters.contains("partial_rotary_factor")) {
    auto with_default = c;
    with_default.rope.partial_rotary_factor = 0.5;
    s.rope = esft::nn::rope_spec_from_config(with_default, c.head_dim);
  }
  s.attention.qkv_bias = c.get<bool>("attention_bias", false);  // o_proj never has a bias in glm4_moe
  if (c.get<bool>("use_qk_norm", false)) s.attention.qk_norm = esft::nn::QKNorm::PerHead;

  const int64_t first_moe = c.get<int64_t>("first_k_dense_replace", 1);
  if (first_moe < 0) throw esft::Error("first_k_dense_replace must not be negative (" + c.source + ")");
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) s.moe_layers[static_cast<size_t>(i)] = i >= first_moe;
  if (first_moe > 0 && c.intermediate_size <= 0) {
    throw esft::Error("intermediate_size is required for the dense layers (" + c.source + ")");
  }

  auto& router = s.moe.router;
  router.scoring = esft::nn::RouterScoring::SigmoidGroupLimited;
  router.norm_topk_prob = c.get<bool>("norm_topk_prob", true);
  router.n_group = c.get<int64_t>("n_group", 1);
  router.topk_group = c.get<int64_t>("topk_group", 1);
  router.routed_scaling_factor = c.get<double>("routed_scaling_factor", 1.0);
  s.moe.experts.intermediate = c.require<int64_t>("moe_intermediate_size");
  const int64_t shared = c.get<int64_t>("n_shared_experts", 1);
  if (shared < 0) throw esft::Error("n_shared_experts must not be negative (" + c.source + ")");
  s.moe.shared_intermediate = s.moe.experts.intermediate * shared;
  s.moe.shared_name = "shared_experts";

  s.load_balancing_loss = false;
  s.skipped_checkpoint_layers = c.get<int64_t>("num_nextn_predict_layers", 0);
  return s;
}

}  // namespace glm4_moe
