#include "esft/nn/decoder_config.h"

#include <algorithm>

#include "esft/error.h"

namespace esft::nn {

namespace {
constexpr int64_t kMaxWidth = int64_t{1} << 24, kMaxLayers = 4096;

void check_range(const char* key, int64_t value, int64_t lowest, int64_t highest, const std::string& source) {
  if (value < lowest || value > highest)
    throw Error(std::string(key) + " must be from " + std::to_string(lowest) + " to " + std::to_string(highest) +
                ", got " + std::to_string(value) + " (" + source + ")");
}
}  // namespace

DecoderSpec dense_decoder_spec(const ModelConfig& c, const std::string& family) {
  for (const char* key : {"hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size"}) {
    c.require<nlohmann::json>(key);
  }
  // The sizes everything else derives from (head_dim and the rotary dimension among them), before they are used.
  check_range("vocab_size", c.vocab_size, 1, kMaxWidth, c.source);
  check_range("hidden_size", c.hidden_size, 1, kMaxWidth, c.source);
  check_range("num_hidden_layers", c.num_hidden_layers, 1, kMaxLayers, c.source);
  check_range("num_attention_heads", c.num_attention_heads, 1, kMaxWidth, c.source);
  check_range("head_dim", c.head_dim, 1, kMaxWidth, c.source);
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

  s.moe_layers.assign(static_cast<size_t>(c.num_hidden_layers), false);
  s.dense_intermediate = c.intermediate_size;
  s.load_balancing_loss = false;
  return s;
}

DecoderSpec common_decoder_spec(const ModelConfig& c, const std::string& family) {
  for (const char* key : {"hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size", "num_experts_per_tok"}) {
    c.require<nlohmann::json>(key);
  }
  if (c.num_experts <= 0) throw Error("config has no num_experts / num_local_experts (" + c.source + ")");
  auto s = dense_decoder_spec(c, family);
  s.moe_layers.assign(s.moe_layers.size(), true);
  s.load_balancing_loss = true;
  s.moe.router.num_experts = c.num_experts;
  s.moe.router.top_k = c.num_experts_per_tok;
  s.moe.router.scoring = RouterScoring::SoftmaxThenTopK;
  s.moe.router.norm_topk_prob = c.norm_topk_prob;
  return s;
}

void check_decoder_spec(const DecoderSpec& s, const std::string& source) {
  auto check = [&](const char* key, int64_t value, int64_t lowest, int64_t highest) {
    check_range(key, value, lowest, highest, source);
  };
  check("vocab_size", s.vocab_size, 1, kMaxWidth);
  check("hidden_size", s.hidden_size, 1, kMaxWidth);
  check("num_hidden_layers", static_cast<int64_t>(s.moe_layers.size()), 1, kMaxLayers);
  check("num_attention_heads", s.attention.num_heads, 1, kMaxWidth);
  check("num_key_value_heads", s.attention.num_kv_heads, 1, s.attention.num_heads);
  check("head_dim", s.attention.head_dim, 1, kMaxWidth);
  if (s.attention.num_heads % s.attention.num_kv_heads != 0)
    throw Error("num_attention_heads must be a multiple of num_key_value_heads (" + source + ")");
  const bool any_moe = std::find(s.moe_layers.begin(), s.moe_layers.end(), true) != s.moe_layers.end();
  const bool any_dense = std::find(s.moe_layers.begin(), s.moe_layers.end(), false) != s.moe_layers.end();
  if (any_dense) check("intermediate_size", s.dense_intermediate, 1, kMaxWidth);
  if (any_moe) {
    check("num_experts", s.moe.router.num_experts, 1, kMaxWidth);
    check("num_experts_per_tok", s.moe.router.top_k, 1, s.moe.router.num_experts);
    check("moe_intermediate_size", s.moe.experts.intermediate, 1, kMaxWidth);
    check("shared expert intermediate size", s.moe.shared_intermediate, 0, kMaxWidth);
  }
  if (!s.sliding_windows.empty()) {
    check("the number of per-layer attention windows", static_cast<int64_t>(s.sliding_windows.size()),
          static_cast<int64_t>(s.moe_layers.size()), static_cast<int64_t>(s.moe_layers.size()));
    for (const int64_t w : s.sliding_windows) check("sliding_window", w, 0, kMaxWidth);
  }
  check("num_nextn_predict_layers", s.skipped_checkpoint_layers, 0, kMaxLayers);
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
