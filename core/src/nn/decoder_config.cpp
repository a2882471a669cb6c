#include "esft/nn/decoder_config.h"

#include <algorithm>

#include "esft/error.h"

namespace esft::nn {

DecoderSpec common_decoder_spec(const ModelConfig& c, const std::string& family) {
  for (const char* key : {"hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size", "num_experts_per_tok"}) {
    c.require<nlohmann::json>(key);
  }
  if (c.num_experts <= 0) throw Error("config has no num_experts / num_local_experts (" + c.source + ")");
  const auto act = c.get<std::string>("hidden_act", "silu");
  if (act != "silu") throw Error("hidden_act '" + act + "' is not supported by " + family + " (" + c.source + ")");
  if (c.num_key_value_heads <= 0 || c.num_attention_heads % c.num_key_value_heads != 0) {
    throw Error("num_attention_heads must be a multiple of num_key_value_heads (" + c.source + ")");
  }

  DecoderSpec s;
  s.vocab_size = c.vocab_size;
  s.hidden_size = c.hidden_size;
  s.rms_norm_eps = c.rms_norm_eps;
  s.tie_word_embeddings = c.tie_word_embeddings;

  s.attention.hidden_size = c.hidden_size;
  s.attention.num_heads = c.num_attention_heads;
  s.attention.num_kv_heads = c.num_key_value_heads;
  s.attention.head_dim = c.head_dim;
  s.attention.norm_eps = c.rms_norm_eps;
  s.rope = rope_spec_from_config(c, c.head_dim);

  s.moe_layers.assign(static_cast<size_t>(c.num_hidden_layers), true);
  s.dense_intermediate = c.intermediate_size;
  s.moe.router.num_experts = c.num_experts;
  s.moe.router.top_k = c.num_experts_per_tok;
  s.moe.router.scoring = RouterScoring::SoftmaxThenTopK;
  s.moe.router.norm_topk_prob = c.norm_topk_prob;
  return s;
}

std::vector<bool> sparse_step_moe_layers(const ModelConfig& c) {
  const auto mlp_only = c.get<std::vector<int64_t>>("mlp_only_layers", {});
  const int64_t step = c.get<int64_t>("decoder_sparse_step", 1);
  if (step <= 0) throw Error("decoder_sparse_step must be positive (" + c.source + ")");
  std::vector<bool> moe;
  bool any_dense = false;
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const bool listed = std::find(mlp_only.begin(), mlp_only.end(), i) != mlp_only.end();
    moe.push_back(!listed && (i + 1) % step == 0);
    any_dense = any_dense || !moe.back();
  }
  if (any_dense && c.intermediate_size <= 0) {
    throw Error("intermediate_size is required for the dense layers (" + c.source + ")");
  }
  return moe;
}

}  // namespace esft::nn
