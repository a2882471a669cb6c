#include "esft/nn/attention.h"

#include <ATen/ATen.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "esft/nn/rotary.h"

namespace esft::nn {

namespace {
AttentionKernel kernel_from_environment() {
  const char* v = std::getenv("ESFT_ATTENTION");
  return v && std::strcmp(v, "eager") == 0 ? AttentionKernel::Eager : AttentionKernel::Fused;
}
std::atomic<AttentionKernel> current_kernel{kernel_from_environment()};
}  // namespace

void set_attention_kernel(AttentionKernel kernel) { current_kernel = kernel; }
AttentionKernel attention_kernel() { return current_kernel; }

static at::Scalar lowest_value(at::ScalarType dtype) {
  switch (dtype) {
    case at::kBFloat16: return at::Scalar(std::numeric_limits<c10::BFloat16>::lowest());
    case at::kHalf: return at::Scalar(std::numeric_limits<c10::Half>::lowest());
    case at::kDouble: return at::Scalar(std::numeric_limits<double>::lowest());
    default: return at::Scalar(std::numeric_limits<float>::lowest());
  }
}

at::Tensor causal_attention_bias(const at::Tensor& attention_mask, int64_t batch, int64_t query_len, int64_t past_len,
                                 at::ScalarType dtype, const at::Device& device, int64_t sliding_window) {
  const int64_t key_len = past_len + query_len;
  auto q_pos = at::arange(past_len, key_len, at::TensorOptions().dtype(at::kLong).device(device)).unsqueeze(1);
  auto k_pos = at::arange(0, key_len, at::TensorOptions().dtype(at::kLong).device(device)).unsqueeze(0);
  auto visible = k_pos <= q_pos;
  if (sliding_window > 0) visible = visible & (k_pos > q_pos - sliding_window);
  auto allowed = visible.unsqueeze(0).expand({batch, query_len, key_len});  // [B, T, S]
  if (attention_mask.defined()) allowed = allowed & attention_mask.to(at::kBool).unsqueeze(1);
  // transformers fills masked positions with finfo(dtype).min rather than -inf, so a fully masked row becomes a
  // uniform distribution instead of NaN; we do the same to match it.
  auto bias = at::zeros({batch, 1, query_len, key_len}, at::TensorOptions().dtype(dtype).device(device));
  return bias.masked_fill(allowed.logical_not().unsqueeze(1), lowest_value(dtype));
}

Attention::Attention(const AttentionSpec& spec, int64_t layer_index, const at::TensorOptions& options)
    : spec_(spec), layer_index_(layer_index) {
  const int64_t q_width = spec.num_heads * spec.head_dim;
  const int64_t kv_width = spec.num_kv_heads * spec.head_dim;
  q_proj = register_module("q_proj", std::make_shared<Linear>(spec.hidden_size, q_width, spec.qkv_bias, options));
  k_proj = register_module("k_proj", std::make_shared<Linear>(spec.hidden_size, kv_width, spec.qkv_bias, options));
  v_proj = register_module("v_proj", std::make_shared<Linear>(spec.hidden_size, kv_width, spec.qkv_bias, options));
  o_proj = register_module("o_proj", std::make_shared<Linear>(q_width, spec.hidden_size, spec.o_bias, options));
  if (spec.qk_norm == QKNorm::PerHead) {
    q_norm = register_module("q_norm", std::make_shared<RMSNorm>(spec.head_dim, spec.norm_eps, options));
    k_norm = register_module("k_norm", std::make_shared<RMSNorm>(spec.head_dim, spec.norm_eps, options));
  } else if (spec.qk_norm == QKNorm::Full) {
    q_norm = register_module("q_norm", std::make_shared<RMSNorm>(q_width, spec.norm_eps, options));
    k_norm = register_module("k_norm", std::make_shared<RMSNorm>(kv_width, spec.norm_eps, options));
  }
  if (spec.sinks) sinks = register_parameter("sinks", at::empty({spec.num_heads}, options));
}

at::Tensor Attention::forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                              const at::Tensor& bias, KVCache* cache) const {
  const int64_t B = x.size(0), T = x.size(1), D = spec_.head_dim;
  auto q = q_proj->forward(x);
  auto k = k_proj->forward(x);
  auto v = v_proj->forward(x);
  // Order as in transformers: a whole-width norm (olmoe) acts on the projection, then q/k/v are clipped, then the
  // reshape into heads, then a per-head norm (qwen3_moe, glm4_moe).
  if (spec_.qk_norm == QKNorm::Full) {
    q = q_norm->forward(q);
    k = k_norm->forward(k);
  }
  if (spec_.clip_qkv > 0) {
    q = q.clamp(-spec_.clip_qkv, spec_.clip_qkv);
    k = k.clamp(-spec_.clip_qkv, spec_.clip_qkv);
    v = v.clamp(-spec_.clip_qkv, spec_.clip_qkv);
  }
  q = q.view({B, T, spec_.num_heads, D});
  k = k.view({B, T, spec_.num_kv_heads, D});
  v = v.view({B, T, spec_.num_kv_heads, D}).transpose(1, 2);
  if (spec_.qk_norm == QKNorm::PerHead) {
    q = q_norm->forward(q);
    k = k_norm->forward(k);
  }
  q = apply_rotary(q.transpose(1, 2), cos, sin);
  k = apply_rotary(k.transpose(1, 2), cos, sin);
  if (cache) std::tie(k, v) = cache->append(layer_index_, k, v);

  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  if (!sinks.defined()) return o_proj->forward(scaled_attention(q, k, v, bias, scale));

  // transformers' GptOssAttention: append the sink column, subtract the row max, softmax in the scores' dtype, drop
  // the sink column.
  const int64_t groups = spec_.num_heads / spec_.num_kv_heads;
  if (groups > 1) {
    k = k.repeat_interleave(groups, 1);
    v = v.repeat_interleave(groups, 1);
  }
  auto scores = at::matmul(q, k.transpose(2, 3)) * scale + bias;
  auto sink = sinks.view({1, -1, 1, 1}).expand({B, -1, T, 1});
  auto combined = at::cat({scores, sink}, -1);
  combined = combined - std::get<0>(combined.max(-1, /*keepdim=*/true));
  auto probs = at::softmax(combined, -1, combined.scalar_type()).narrow(-1, 0, scores.size(-1));
  auto out = at::matmul(probs, v).transpose(1, 2).reshape({B, T, spec_.num_heads * D});
  return o_proj->forward(out);
}

at::Tensor scaled_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& bias,
                            double scale) {
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), Dv = v.size(-1);
  const int64_t groups = H / k.size(1);
  if (attention_kernel() == AttentionKernel::Fused) {
    // Grouped-query attention without copying the kv heads (enable_gqa).
    auto out = at::scaled_dot_product_attention(q, k, v, bias, /*dropout_p=*/0.0, /*is_causal=*/false, scale,
                                                /*enable_gqa=*/groups > 1);
    return out.transpose(1, 2).reshape({B, T, H * Dv});
  }
  // transformers' eager formula. Kv head j serves query heads j*g .. j*g+g-1.
  auto keys = groups > 1 ? k.repeat_interleave(groups, 1) : k;
  auto values = groups > 1 ? v.repeat_interleave(groups, 1) : v;
  auto scores = at::matmul(q, keys.transpose(2, 3)) * scale + bias;
  auto probs = at::softmax(scores, -1, at::kFloat).to(q.scalar_type());
  return at::matmul(probs, values).transpose(1, 2).reshape({B, T, H * Dv});
}

}  // namespace esft::nn
