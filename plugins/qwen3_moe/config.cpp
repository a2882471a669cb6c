#include <algorithm>

#include "esft/error.h"
#include "qwen3_moe.h"

namespace qwen3_moe {

using esft::Error;

esft::nn::DecoderSpec decoder_spec(const esft::ModelConfig& c) {
  for (const char* key : {"hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size",
                          "moe_intermediate_size", "num_experts_per_tok"}) {
    c.require<nlohmann::json>(key);
  }
  if (c.num_experts <= 0) throw Error("config has no num_experts / num_local_experts (" + c.source + ")");
  if (c.get<std::string>("hidden_act", "silu") != "silu") {
    throw Error("hidden_act '" + c.get<std::string>("hidden_act", "") + "' is not supported by qwen3_moe (" + c.source + ")");
  }
  if (c.get<bool>("use_sliding_window", false)) {
    throw Error("use_sliding_window is not supported by qwen3_moe (" + c.source + ")");
  }
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    throw Error("num_attention_heads must be a multiple of num_key_value_heads (" + c.source + ")");
  }

  esft::nn::DecoderSpec s;
  s.vocab_size = c.vocab_size;
  s.hidden_size = c.hidden_size;
  s.rms_norm_eps = c.rms_norm_eps;
  s.tie_word_embeddings = c.tie_word_embeddings;

  s.attention.hidden_size = c.hidden_size;
  s.attention.num_heads = c.num_attention_heads;
  s.attention.num_kv_heads = c.num_key_value_heads;
  s.attention.head_dim = c.head_dim;
  s.attention.qkv_bias = c.get<bool>("attention_bias", false);
  s.attention.o_bias = s.attention.qkv_bias;
  s.attention.qk_norm = esft::nn::QKNorm::PerHead;
  s.attention.norm_eps = c.rms_norm_eps;
  s.rope = esft::nn::rope_spec_from_config(c, c.head_dim);

  // Layer i is MoE unless listed in mlp_only_layers, and only every decoder_sparse_step-th layer is.
  const auto mlp_only = c.get<std::vector<int64_t>>("mlp_only_layers", {});
  const int64_t step = c.get<int64_t>("decoder_sparse_step", 1);
  if (step <= 0) throw Error("decoder_sparse_step must be positive (" + c.source + ")");
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const bool dense = std::find(mlp_only.begin(), mlp_only.end(), i) != mlp_only.end();
    s.moe_layers.push_back(!dense && (i + 1) % step == 0);
  }
  s.dense_intermediate = c.intermediate_size;

  s.moe.router.num_experts = c.num_experts;
  s.moe.router.top_k = c.num_experts_per_tok;
  s.moe.router.scoring = esft::nn::RouterScoring::SoftmaxThenTopK;
  s.moe.router.norm_topk_prob = c.norm_topk_prob;
  s.moe.expert_intermediate = c.moe_intermediate_size;
  return s;
}

}  // namespace qwen3_moe
