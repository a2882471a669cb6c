#pragma once
// Leaf modules whose parameter names match Hugging Face's (`weight`, `bias`), so a module tree built with HF
// attribute names yields checkpoint keys from named_parameters(). Parameters are allocated uninitialised: every
// value comes from a checkpoint (or the meta device, when only shapes are needed).
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include <memory>

#include "esft/nn/lora.h"

namespace esft::nn {

class Linear : public torch::nn::Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias, const at::TensorOptions& options);
  // W x + b, plus the LoRA pair's input path when one is attached.
  at::Tensor forward(const at::Tensor& x) const;

  // Attaches a LoRA pair (module `lora`) on the weight's device and dtype; throws esft::Error when one is attached.
  LoraPair& add_lora(const LoraSpec& spec);
  // Adds the pair's delta into the weight and removes the pair (the forward is then plain again).
  void fold_lora();

  at::Tensor weight;  // [out, in]
  at::Tensor bias;    // [out] or undefined
  std::shared_ptr<LoraPair> lora;  // null unless attached
};

class Embedding : public torch::nn::Module {
 public:
  Embedding(int64_t num_embeddings, int64_t dim, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& ids) const;

  at::Tensor weight;  // [num_embeddings, dim]
};

// y = w * (x / sqrt(mean(x^2) + eps)), normalised in float32. Most HF families cast back to the input dtype and
// then multiply by w; gpt-oss multiplies in float32 and casts last (`scale_in_float32`). Same value in float32.
class RMSNorm : public torch::nn::Module {
 public:
  RMSNorm(int64_t dim, double eps, const at::TensorOptions& options, bool scale_in_float32 = false);
  at::Tensor forward(const at::Tensor& x) const;

  at::Tensor weight;
  double eps;
  bool scale_in_float32;
};

// y = (x - mean(x)) / sqrt(var(x) + eps) * weight + bias over the last dimension (biased variance), as
// torch.nn.LayerNorm computes it: GPT-style blocks (tinymoe).
class LayerNorm : public torch::nn::Module {
 public:
  LayerNorm(int64_t dim, double eps, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x) const;

  at::Tensor weight, bias;
  double eps;
};

// down(silu(gate(x)) * up(x)): dense layers and shared experts.
class SwiGLU : public torch::nn::Module {
 public:
  SwiGLU(int64_t hidden, int64_t intermediate, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x) const;

  std::shared_ptr<Linear> gate_proj, up_proj, down_proj;
};

}  // namespace esft::nn
