#include "esft/nn/router.h"

#include <ATen/ATen.h>

namespace esft::nn {

Router::Router(const RouterSpec& spec, int64_t hidden, const at::TensorOptions& options) : spec_(spec) {
  weight = register_parameter("weight", at::empty({spec.num_experts, hidden}, options));
}

Routing Router::forward(const at::Tensor& x) const {
  Routing r;
  r.logits = at::linear(x, weight);
  switch (spec_.scoring) {
    case RouterScoring::SoftmaxThenTopK: {
      auto probs = at::softmax(r.logits, -1, at::kFloat);
      auto [values, idx] = at::topk(probs, spec_.top_k, -1);
      if (spec_.norm_topk_prob) values = values / values.sum(-1, /*keepdim=*/true);
      r.idx = idx;
      r.weight = values.to(r.logits.scalar_type());
      break;
    }
  }
  return r;
}

}  // namespace esft::nn
