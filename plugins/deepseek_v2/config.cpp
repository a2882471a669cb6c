// config.json -> DeepseekV2Spec. Keys as DeepSeek's own configs spell them (transformers 5.17 reads the same ones).
#include <cmath>

#include "deepseek_v2.h"
#include "esft/error.h"
#include "esft/nn/decoder_config.h"

namespace deepseek_v2 {

namespace {

// 1 / sqrt(qk_head_dim), times mscale(factor, mscale_all_dim)^2 under YaRN: DeepSeek scales the attention logits
// for long contexts there rather than in the rotary tables.
double softmax_scale(const esft::ModelConfig& c, const esft::nn::RopeSpec& rope, int64_t qk_head_dim) {
  double scale = 1.0 / std::sqrt(static_cast<double>(qk_head_dim));
  if (rope.yarn) {
    const auto& p = c.rope.parameters;
    const double all_dim = p.contains("mscale_all_dim") && p.at("mscale_all_dim").is_number()
                               ? p.at("mscale_all_dim").get<double>() : 0.0;
    if (all_dim != 0) {
      const double m = esft::nn::yarn_mscale(rope.yarn->factor, all_dim);
      scale *= m * m;
    }
  }
  return scale;
}

// Layer i is MoE from first_k_dense_replace on, every moe_layer_freq-th layer (DeepSeek's rule; transformers 5.17
// ignores moe_layer_freq, which every released DeepSeek-V2 sets to 1).
std::vector<bool> moe_layer_pattern(const esft::ModelConfig& c) {
  const int64_t first = c.get<int64_t>("first_k_dense_replace", 0);
  const int64_t freq = c.get<int64_t>("moe_layer_freq", 1);
  if (first < 0) throw esft::Error("first_k_dense_replace must not be negative (" + c.source + ")");
  if (freq < 1) throw esft::Error("moe_layer_freq must be positive (" + c.source + ")");
  std::vector<bool> moe;
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) moe.push_back(i >= first && i % freq == 0);
  return moe;
}

}  // namespace

DeepseekV2Spec read_spec(const esft::ModelConfig& c) {
  // Sizes, norms, the activation and the router's basics as every family reads them; the attention part of this
  // spec does not apply (the layers attend with LatentAttention) and is replaced below. Its head size is taken to be
  // qk_rope_head_dim, as transformers' DeepseekV2Config sets head_dim, so that hidden_size / heads (which MLA never
  // uses) cannot refuse a valid config.
  const int64_t rope_dim = c.require<int64_t>("qk_rope_head_dim");
  if (rope_dim <= 0 || rope_dim > (int64_t{1} << 24) || rope_dim % 2 != 0) {
    throw esft::Error("qk_rope_head_dim must be even, from 2 to 16777216, got " + std::to_string(rope_dim) + " (" +
                      c.source + ")");
  }
  auto with_head_dim = c;
  with_head_dim.head_dim = rope_dim;
  auto base = esft::nn::common_decoder_spec(with_head_dim, "deepseek_v2");
  if (c.num_key_value_heads != c.num_attention_heads) {
    throw esft::Error("num_key_value_heads must equal num_attention_heads in deepseek_v2: latent attention gives every "
                      "head its own keys (" + c.source + ")");
  }
  if (c.get<bool>("mlp_bias", false)) throw esft::Error("mlp_bias true is not supported by deepseek_v2 (" + c.source + ")");
  const auto scoring = c.get<std::string>("scoring_func", "softmax");
  if (scoring != "softmax") {
    throw esft::Error("scoring_func '" + scoring + "' is not supported by deepseek_v2, only softmax (" + c.source + ")");
  }
  const auto topk_method = c.get<std::string>("topk_method", "greedy");
  if (topk_method != "greedy" && topk_method != "group_limited_greedy") {
    throw esft::Error("topk_method '" + topk_method + "' is not supported by deepseek_v2, only greedy and " +
                      "group_limited_greedy (" + c.source + ")");
  }
  base.moe_layers = moe_layer_pattern(c);
  base.moe.experts.intermediate = c.require<int64_t>("moe_intermediate_size");
  const int64_t shared = c.get<int64_t>("n_shared_experts", 0);
  if (shared < 0) throw esft::Error("n_shared_experts must not be negative (" + c.source + ")");
  base.moe.shared_intermediate = base.moe.experts.intermediate * shared;
  base.moe.shared_name = "shared_experts";
  auto& router = base.moe.router;
  router.scoring = esft::nn::RouterScoring::SoftmaxGroupLimited;
  router.norm_topk_prob = c.get<bool>("norm_topk_prob", false);
  router.routed_scaling_factor = c.get<double>("routed_scaling_factor", 1.0);
  if (topk_method == "group_limited_greedy") {
    router.n_group = c.require<int64_t>("n_group");
    router.topk_group = c.require<int64_t>("topk_group");
  }
  esft::nn::check_decoder_spec(base, c.source);

  DeepseekV2Spec s;
  s.vocab_size = base.vocab_size;
  s.hidden_size = base.hidden_size;
  s.rms_norm_eps = base.rms_norm_eps;
  s.tie_word_embeddings = base.tie_word_embeddings;
  s.moe_layers = base.moe_layers;
  s.dense_intermediate = base.dense_intermediate;
  s.moe = base.moe;

  auto& a = s.attention;
  a.hidden_size = c.hidden_size;
  a.num_heads = c.num_attention_heads;
  a.q_lora_rank = c.get<int64_t>("q_lora_rank", 0);
  a.kv_lora_rank = c.require<int64_t>("kv_lora_rank");
  a.qk_nope_head_dim = c.require<int64_t>("qk_nope_head_dim");
  a.qk_rope_head_dim = rope_dim;
  a.v_head_dim = c.require<int64_t>("v_head_dim");
  a.bias = c.get<bool>("attention_bias", false);
  for (const auto& [key, value] : {std::pair<const char*, int64_t>{"kv_lora_rank", a.kv_lora_rank},
                                   {"qk_nope_head_dim", a.qk_nope_head_dim},
                                   {"v_head_dim", a.v_head_dim}}) {
    if (value <= 0 || value > (int64_t{1} << 24)) {
      throw esft::Error(std::string(key) + " must be from 1 to 16777216, got " + std::to_string(value) + " (" +
                        c.source + ")");
    }
  }
  if (a.q_lora_rank < 0 || a.q_lora_rank > (int64_t{1} << 24)) {
    throw esft::Error("q_lora_rank must be null or from 1 to 16777216 (" + c.source + ")");
  }
  s.rope = base.rope;  // over qk_rope_head_dim, the head size the shared reading was given
  a.softmax_scale = softmax_scale(c, s.rope, a.qk_head_dim());
  return s;
}

}  // namespace deepseek_v2
