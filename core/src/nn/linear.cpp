#include "esft/nn/linear.h"

#include <ATen/ATen.h>

#include "esft/error.h"

namespace esft::nn {

Linear::Linear(int64_t in_features, int64_t out_features, bool with_bias, const at::TensorOptions& options) {
  weight = register_parameter("weight", at::empty({out_features, in_features}, options));
  if (with_bias) bias = register_parameter("bias", at::empty({out_features}, options));
}

at::Tensor Linear::forward(const at::Tensor& x) const {
  auto y = at::linear(x, weight, bias);
  return lora ? y + lora->forward(x).to(y.scalar_type()) : y;
}

LoraPair& Linear::add_lora(const LoraSpec& spec) {
  return attach_lora_pair(*this, "lora", lora, 1, weight.size(0), weight.size(1), spec, weight.options());
}

void Linear::fold_lora() { fold_lora_pair(*this, "lora", lora, weight); }

Embedding::Embedding(int64_t num_embeddings, int64_t dim, const at::TensorOptions& options) {
  weight = register_parameter("weight", at::empty({num_embeddings, dim}, options));
}

at::Tensor Embedding::forward(const at::Tensor& ids) const { return at::embedding(weight, ids); }

RMSNorm::RMSNorm(int64_t dim, double eps_, const at::TensorOptions& options, bool scale_in_float32_)
    : eps(eps_), scale_in_float32(scale_in_float32_) {
  weight = register_parameter("weight", at::empty({dim}, options));
}

at::Tensor RMSNorm::forward(const at::Tensor& x) const {
  const auto input_dtype = x.scalar_type();
  auto h = x.to(at::kFloat);
  auto variance = h.pow(2).mean(-1, /*keepdim=*/true);
  h = h * at::rsqrt(variance + eps);
  if (scale_in_float32) return (weight * h).to(input_dtype);
  return weight * h.to(input_dtype);
}

LayerNorm::LayerNorm(int64_t dim, double eps_, const at::TensorOptions& options) : eps(eps_) {
  weight = register_parameter("weight", at::empty({dim}, options));
  bias = register_parameter("bias", at::empty({dim}, options));
}

at::Tensor LayerNorm::forward(const at::Tensor& x) const {
  return at::layer_norm(x, {weight.size(0)}, weight, bias, eps);
}

SwiGLU::SwiGLU(int64_t hidden, int64_t intermediate, const at::TensorOptions& options) {
  gate_proj = register_module("gate_proj", std::make_shared<Linear>(hidden, intermediate, false, options));
  up_proj = register_module("up_proj", std::make_shared<Linear>(hidden, intermediate, false, options));
  down_proj = register_module("down_proj", std::make_shared<Linear>(intermediate, hidden, false, options));
}

at::Tensor SwiGLU::forward(const at::Tensor& x) const {
  return down_proj->forward(at::silu(gate_proj->forward(x)) * up_proj->forward(x));
}

}  // namespace esft::nn
