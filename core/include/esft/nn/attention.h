#pragma once
// Multi-head attention with grouped key/value heads, rotary positions, optional q/k RMSNorm (per head or over the
// whole projection), optional q/k/v clipping and optional learned attention sinks. Sliding windows live in the mask.
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include "esft/nn/kv_cache.h"
#include "esft/nn/linear.h"

namespace esft::nn {

enum class QKNorm {
  None,
  PerHead,  // RMSNorm over head_dim of every head, after the reshape into heads (qwen3_moe, glm4_moe)
  Full,     // RMSNorm over the whole projection width (weights [n_heads*head_dim], [n_kv_heads*head_dim]), before
            // the reshape into heads (olmoe)
};

// How attention weights are computed. Fused: LibTorch's scaled_dot_product_attention (flash kernels on CPU and GPU,
// no [B, heads, T, T] score tensor kept for backward). Eager: transformers' eager formula (float32 softmax over
// `q k^T * scale + mask`), which layers with sinks always use. Both match transformers within the parity tolerances,
// and the parity tests run both. Process-wide, Fused by default; the environment variable ESFT_ATTENTION=eager
// selects Eager at start-up.
enum class AttentionKernel { Fused, Eager };
void set_attention_kernel(AttentionKernel kernel);
AttentionKernel attention_kernel();

struct AttentionSpec {
  int64_t hidden_size = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  bool qkv_bias = false;
  bool o_bias = false;
  QKNorm qk_norm = QKNorm::None;
  double norm_eps = 1e-6;
  // > 0: clamp q, k and v to [-clip_qkv, clip_qkv] after the projections (and after a Full q/k norm, as
  // transformers' OlmoeAttention does); 0 = off.
  double clip_qkv = 0;
  // gpt-oss: a learned logit per head (`sinks` [num_heads]) joins every softmax as an extra key with no value.
  bool sinks = false;
};

// The additive mask [B, 1, T, past + T]: 0 where query t may see key s (s <= past + t, key s is not padding, and
// with a sliding window W > 0 also s > past + t - W), the dtype's lowest value elsewhere. `attention_mask`
// [B, past + T] (1 = real token) may be undefined.
at::Tensor causal_attention_bias(const at::Tensor& attention_mask, int64_t batch, int64_t query_len, int64_t past_len,
                                 at::ScalarType dtype, const at::Device& device, int64_t sliding_window = 0);

// softmax(q k^T * scale + bias) v with the current kernel: q [B, H, T, Dk], k [B, Hkv, S, Dk], v [B, Hkv, S, Dv]
// (H a multiple of Hkv: grouped-query attention) -> [B, T, H * Dv]. Without sinks, every attention block here
// ends with this.
at::Tensor scaled_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& bias,
                            double scale);

class Attention : public torch::nn::Module {
 public:
  Attention(const AttentionSpec& spec, int64_t layer_index, const at::TensorOptions& options);
  // x [B, T, H]; cos/sin from RotaryEmbedding; bias from causal_attention_bias. Appends to `cache` when given.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& bias,
                     KVCache* cache) const;

  std::shared_ptr<Linear> q_proj, k_proj, v_proj, o_proj;
  std::shared_ptr<RMSNorm> q_norm, k_norm;  // null without q/k norm
  at::Tensor sinks;                         // [num_heads] with spec.sinks, else undefined

 private:
  AttentionSpec spec_;
  int64_t layer_index_;
};

}  // namespace esft::nn
