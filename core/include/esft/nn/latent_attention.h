#pragma once
// Multi-head latent attention (DeepSeek-V2, shared/spec/MODELS.md). Keys and values come from one small latent
// per token: kv_a_proj_with_mqa maps h to [latent (kv_lora_rank) | k_rope (qk_rope_head_dim)], the latent is
// RMS-normed (kv_a_layernorm) and kv_b_proj expands it into every head's [k_nope | v]. k_rope is one head shared by
// all heads. Queries come from q_proj, or through a low-rank bottleneck (q_a_proj, q_a_layernorm, q_b_proj) when
// q_lora_rank is set, and split into [q_nope | q_rope]. Only the rope parts rotate, in the interleaved form. The
// KV cache holds the normed latent and the rotated k_rope, not the expanded keys and values: that is the point
// of the design (576 numbers per token and layer in DeepSeek-V2-Lite instead of 5,120).
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include "esft/nn/kv_cache.h"
#include "esft/nn/linear.h"

namespace esft::nn {

struct LatentAttentionSpec {
  int64_t hidden_size = 0;
  int64_t num_heads = 0;
  int64_t q_lora_rank = 0;  // 0: q_proj straight from h (DeepSeek-V2-Lite); else the q_a/q_b bottleneck
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_head_dim = 0;
  int64_t qk_rope_head_dim = 0;
  int64_t v_head_dim = 0;
  bool bias = false;  // `attention_bias`: biases on q_a_proj, kv_a_proj_with_mqa and o_proj
  // The latent norms' epsilon: transformers and DeepSeek's code build them with RMSNorm's default, not the config's
  // rms_norm_eps.
  double latent_norm_eps = 1e-6;
  double softmax_scale = 0;  // 0: 1 / sqrt(qk_nope_head_dim + qk_rope_head_dim); YaRN's mscale changes it

  int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
};

class LatentAttention : public torch::nn::Module {
 public:
  // Throws esft::Error for a size that is not positive.
  LatentAttention(const LatentAttentionSpec& spec, int64_t layer_index, const at::TensorOptions& options);
  // x [B, T, H]; cos/sin [B, T, qk_rope_head_dim] from RotaryEmbedding (float32 keeps transformers' precision);
  // bias from causal_attention_bias. Appends the latent and k_rope to `cache` when given.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& bias,
                     KVCache* cache) const;

  std::shared_ptr<Linear> q_proj;                     // without q_lora_rank
  std::shared_ptr<Linear> q_a_proj, q_b_proj;         // with q_lora_rank
  std::shared_ptr<RMSNorm> q_a_layernorm;             // with q_lora_rank
  std::shared_ptr<Linear> kv_a_proj_with_mqa, kv_b_proj, o_proj;
  std::shared_ptr<RMSNorm> kv_a_layernorm;

 private:
  LatentAttentionSpec spec_;
  int64_t layer_index_;
};

}  // namespace esft::nn
