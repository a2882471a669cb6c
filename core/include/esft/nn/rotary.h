#pragma once
// Rotary position embeddings, non-interleaved ("rotate_half") as in most of Hugging Face, or interleaved (pairs of
// adjacent channels, DeepSeek-V2). `rotary_dim` may be smaller
// than head_dim (partial rotary): only the first rotary_dim channels rotate, the rest pass through. Frequencies
// are the default ones, YaRN's (gpt-oss, DeepSeek) or Llama 3's; any other rope_type is refused.
#include <ATen/core/Tensor.h>

#include <optional>
#include <utility>

#include "esft/model/model_config.h"

namespace esft::nn {

// YaRN (transformers' _compute_yarn_parameters): frequencies blend interpolation (inv_freq / factor) and
// extrapolation across a linear ramp between the correction dims of beta_fast and beta_slow.
struct YarnSpec {
  double factor = 1.0;
  double original_max_position_embeddings = 0;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  bool truncate = true;  // floor/ceil the correction range
};

// Llama 3.1's frequency scaling (transformers' _compute_llama3_parameters): wavelengths longer than
// original_max_position_embeddings / low_freq_factor are divided by `factor`, shorter than .../ high_freq_factor kept,
// and those between blended smoothly.
struct Llama3RopeSpec {
  double factor = 8.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  double original_max_position_embeddings = 8192;
};

struct RopeSpec {
  int64_t head_dim = 0;
  int64_t rotary_dim = 0;  // <= head_dim
  double theta = 10000.0;
  double attention_scaling = 1.0;  // multiplies cos and sin (YaRN sets it; 1 otherwise)
  std::optional<YarnSpec> yarn;    // unset: default frequencies
  std::optional<Llama3RopeSpec> llama3;
  // The precision the checkpoint declares (config `dtype` / `torch_dtype`). transformers keeps `inv_freq` as a
  // floating buffer, so a model materialised in bfloat16 rounds it to bfloat16 (and keeps it rounded after a later
  // upcast); its forward then upcasts with `.float()`. We round the same way, through this dtype and through the
  // dtype the model runs in, so positions match transformers to float32 precision in both cases.
  at::ScalarType checkpoint_dtype = at::kFloat;
};

// transformers' (and DeepSeek's) get_mscale: 1 for scale <= 1, else 0.1 * mscale * ln(scale) + 1. YaRN's attention
// factor is a ratio of two of these; DeepSeek-V2 also scales its attention logits by one squared.
double yarn_mscale(double scale, double mscale);

// Builds the spec from a config's rope settings ("default", "yarn" or "llama3"); throws esft::Error for any other rope_type,
// so a family never runs with silently wrong positions.
RopeSpec rope_spec_from_config(const ModelConfig& config, int64_t head_dim);

class RotaryEmbedding {
 public:
  RotaryEmbedding(const RopeSpec& spec, const at::Device& device, at::ScalarType model_dtype);
  // positions [B, T] or [1, T] int64 -> (cos, sin), each [B, T, rotary_dim] in `dtype`.
  std::pair<at::Tensor, at::Tensor> cos_sin(const at::Tensor& positions, at::ScalarType dtype) const;
  const RopeSpec& spec() const { return spec_; }

 private:
  RopeSpec spec_;
  at::Tensor inv_freq_;  // [rotary_dim / 2] float32
};

// The inverse frequencies [rotary_dim / 2], float32 on the CPU, before any dtype rounding.
at::Tensor rope_inv_freq(const RopeSpec& spec);

// x [B, heads, T, head_dim]; cos/sin [B, T, rotary_dim], or undefined: no rotation (learned positions).
at::Tensor apply_rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

// The interleaved form (DeepSeek-V2's complex rotation): x [B, heads, T, d] with d = rotary_dim, channel pairs
// (2i, 2i+1) rotate by frequency i. cos/sin are the same tables as for apply_rotary (their first half is used).
// Computed in float32, as transformers' view_as_complex does, and cast back to x's dtype.
at::Tensor apply_rotary_interleaved(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

}  // namespace esft::nn
