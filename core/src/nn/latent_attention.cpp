#include "esft/nn/latent_attention.h"

#include <ATen/ATen.h>

#include <cmath>
#include <string>

#include "esft/error.h"
#include "esft/nn/attention.h"
#include "esft/nn/rotary.h"

namespace esft::nn {

LatentAttention::LatentAttention(const LatentAttentionSpec& spec, int64_t layer_index, const at::TensorOptions& options)
    : spec_(spec), layer_index_(layer_index) {
  const std::pair<const char*, int64_t> sizes[] = {{"hidden_size", spec.hidden_size},
                                                   {"num_attention_heads", spec.num_heads},
                                                   {"kv_lora_rank", spec.kv_lora_rank},
                                                   {"qk_nope_head_dim", spec.qk_nope_head_dim},
                                                   {"qk_rope_head_dim", spec.qk_rope_head_dim},
                                                   {"v_head_dim", spec.v_head_dim}};
  for (const auto& [key, value] : sizes) {
    if (value <= 0) throw Error(std::string(key) + " must be positive, not " + std::to_string(value));
  }
  if (spec.q_lora_rank < 0) throw Error("q_lora_rank must be positive or null, not " + std::to_string(spec.q_lora_rank));
  if (spec.qk_rope_head_dim % 2 != 0) {
    throw Error("qk_rope_head_dim must be even (channel pairs rotate), not " + std::to_string(spec.qk_rope_head_dim));
  }
  const int64_t H = spec.hidden_size, heads = spec.num_heads;
  if (spec.q_lora_rank == 0) {
    q_proj = register_module("q_proj", std::make_shared<Linear>(H, heads * spec.qk_head_dim(), false, options));
  } else {
    q_a_proj = register_module("q_a_proj", std::make_shared<Linear>(H, spec.q_lora_rank, spec.bias, options));
    q_a_layernorm =
        register_module("q_a_layernorm", std::make_shared<RMSNorm>(spec.q_lora_rank, spec.latent_norm_eps, options));
    q_b_proj = register_module("q_b_proj",
                               std::make_shared<Linear>(spec.q_lora_rank, heads * spec.qk_head_dim(), false, options));
  }
  kv_a_proj_with_mqa = register_module(
      "kv_a_proj_with_mqa", std::make_shared<Linear>(H, spec.kv_lora_rank + spec.qk_rope_head_dim, spec.bias, options));
  kv_a_layernorm =
      register_module("kv_a_layernorm", std::make_shared<RMSNorm>(spec.kv_lora_rank, spec.latent_norm_eps, options));
  kv_b_proj = register_module(
      "kv_b_proj",
      std::make_shared<Linear>(spec.kv_lora_rank, heads * (spec.qk_nope_head_dim + spec.v_head_dim), false, options));
  o_proj = register_module("o_proj", std::make_shared<Linear>(heads * spec.v_head_dim, H, spec.bias, options));
}

at::Tensor LatentAttention::forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                                    const at::Tensor& bias, KVCache* cache) const {
  const int64_t B = x.size(0), T = x.size(1), heads = spec_.num_heads;
  const int64_t nope = spec_.qk_nope_head_dim, rope = spec_.qk_rope_head_dim, dv = spec_.v_head_dim;
  auto q = q_proj ? q_proj->forward(x) : q_b_proj->forward(q_a_layernorm->forward(q_a_proj->forward(x)));
  q = q.view({B, T, heads, spec_.qk_head_dim()}).transpose(1, 2);  // [B, heads, T, nope + rope]
  auto q_rope = apply_rotary_interleaved(q.narrow(-1, nope, rope), cos, sin);

  auto compressed = kv_a_proj_with_mqa->forward(x);  // [B, T, latent + rope]
  auto latent = kv_a_layernorm->forward(compressed.narrow(-1, 0, spec_.kv_lora_rank)).unsqueeze(1);
  auto k_rope = apply_rotary_interleaved(compressed.narrow(-1, spec_.kv_lora_rank, rope).unsqueeze(1), cos, sin);
  if (cache) std::tie(latent, k_rope) = cache->append(layer_index_, latent, k_rope);  // [B, 1, S, .] each

  const int64_t S = latent.size(2);
  auto kv = kv_b_proj->forward(latent).view({B, S, heads, nope + dv}).transpose(1, 2);  // [B, heads, S, nope + dv]
  auto k = at::cat({kv.narrow(-1, 0, nope), k_rope.expand({B, heads, S, rope})}, -1);
  auto v = kv.narrow(-1, nope, dv);
  q = at::cat({q.narrow(-1, 0, nope), q_rope}, -1);
  const double scale = spec_.softmax_scale > 0 ? spec_.softmax_scale
                                               : 1.0 / std::sqrt(static_cast<double>(spec_.qk_head_dim()));
  return o_proj->forward(scaled_attention(q, k, v, bias, scale));
}

}  // namespace esft::nn
