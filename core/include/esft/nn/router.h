#pragma once
// The router of a MoE layer (`mlp.gate` in every family): scores tokens against experts and picks the top k.
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

namespace esft::nn {

enum class RouterScoring {
  SoftmaxThenTopK,  // p = softmax(logits) over all experts; top-k of p; optional renormalisation (qwen, olmoe)
};

struct RouterSpec {
  int64_t num_experts = 0;
  int64_t top_k = 0;
  RouterScoring scoring = RouterScoring::SoftmaxThenTopK;
  bool norm_topk_prob = false;
};

struct Routing {
  at::Tensor logits;  // [N, E] raw scores
  at::Tensor idx;     // [N, k] int64
  at::Tensor weight;  // [N, k] in the input dtype, as applied to expert outputs
};

class Router : public torch::nn::Module {
 public:
  Router(const RouterSpec& spec, int64_t hidden, const at::TensorOptions& options);
  Routing forward(const at::Tensor& x) const;  // x [N, H]
  const RouterSpec& spec() const { return spec_; }

  at::Tensor weight;  // [E, H]

 private:
  RouterSpec spec_;
};

}  // namespace esft::nn
