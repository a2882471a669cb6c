#include "esft/nn/rotary.h"

#include <ATen/ATen.h>

#include "esft/error.h"

namespace esft::nn {

RopeSpec rope_spec_from_config(const ModelConfig& config, int64_t head_dim) {
  if (config.rope.type != "default") {
    throw Error("rope_type '" + config.rope.type + "' is not supported for model_type '" + config.model_type +
                "' (" + config.source + ")");
  }
  RopeSpec spec;
  spec.head_dim = head_dim;
  spec.rotary_dim = static_cast<int64_t>(static_cast<double>(head_dim) * config.rope.partial_rotary_factor);
  if (spec.rotary_dim <= 0 || spec.rotary_dim > head_dim || spec.rotary_dim % 2 != 0) {
    throw Error("partial_rotary_factor " + std::to_string(config.rope.partial_rotary_factor) +
                " gives an invalid rotary dimension for head_dim " + std::to_string(head_dim) + " (" + config.source +
                ")");
  }
  spec.theta = config.rope.theta;
  const auto declared = config.get<std::string>("dtype", config.get<std::string>("torch_dtype", "float32"));
  if (declared == "bfloat16") spec.checkpoint_dtype = at::kBFloat16;
  if (declared == "float16") spec.checkpoint_dtype = at::kHalf;
  return spec;
}

RotaryEmbedding::RotaryEmbedding(const RopeSpec& spec, const at::Device& device, at::ScalarType model_dtype)
    : spec_(spec) {
  // Same op sequence as transformers: 1 / base^(arange(0, d, 2) / d), in float32.
  auto exponent = at::arange(0, spec.rotary_dim, 2, at::kLong).to(at::kFloat) / static_cast<double>(spec.rotary_dim);
  auto inv_freq = at::pow(spec.theta, exponent).reciprocal();
  for (auto dtype : {spec.checkpoint_dtype, model_dtype}) {
    if (dtype == at::kBFloat16 || dtype == at::kHalf) inv_freq = inv_freq.to(dtype).to(at::kFloat);
  }
  inv_freq_ = inv_freq.to(device);
}

std::pair<at::Tensor, at::Tensor> RotaryEmbedding::cos_sin(const at::Tensor& positions, at::ScalarType dtype) const {
  auto freqs = positions.to(at::kFloat).unsqueeze(-1) * inv_freq_;  // [B, T, d/2]
  auto emb = at::cat({freqs, freqs}, -1);
  auto cos = emb.cos();
  auto sin = emb.sin();
  if (spec_.attention_scaling != 1.0) {
    cos = cos * spec_.attention_scaling;
    sin = sin * spec_.attention_scaling;
  }
  return {cos.to(dtype), sin.to(dtype)};
}

static at::Tensor rotate_half(const at::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

at::Tensor apply_rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  auto c = cos.unsqueeze(1);
  auto s = sin.unsqueeze(1);
  const int64_t rotary_dim = c.size(-1);
  if (rotary_dim == x.size(-1)) return x * c + rotate_half(x) * s;
  auto rot = x.narrow(-1, 0, rotary_dim);
  auto pass = x.narrow(-1, rotary_dim, x.size(-1) - rotary_dim);
  return at::cat({rot * c + rotate_half(rot) * s, pass}, -1);
}

}  // namespace esft::nn
