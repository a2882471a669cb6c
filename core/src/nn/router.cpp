#include "esft/nn/router.h"

#include <ATen/ATen.h>

#include <string>

#include "esft/error.h"

namespace esft::nn {

Router::Router(const RouterSpec& spec, int64_t hidden, const at::TensorOptions& options) : spec_(spec) {
  const int64_t E = spec.num_experts;
  if (spec.top_k < 1 || spec.top_k > E) {
    throw Error("num_experts_per_tok " + std::to_string(spec.top_k) + " is outside [1, " + std::to_string(E) + "]");
  }
  weight = register_parameter("weight", at::empty({E, hidden}, options));
  if (spec.bias) bias = register_parameter("bias", at::empty({E}, options));
  const bool sigmoid = spec.scoring == RouterScoring::SigmoidGroupLimited;
  if (sigmoid || spec.scoring == RouterScoring::SoftmaxGroupLimited) {
    const int64_t smallest = sigmoid ? 2 : 1;  // a sigmoid group scores by its top 2
    if (spec.n_group < 1 || E % spec.n_group != 0 || E / spec.n_group < smallest) {
      throw Error("n_group " + std::to_string(spec.n_group) + " must divide " + std::to_string(E) +
                  " experts into groups of at least " + std::to_string(smallest));
    }
    if (spec.topk_group < 1 || spec.topk_group > spec.n_group || spec.topk_group * (E / spec.n_group) < spec.top_k) {
      throw Error("topk_group " + std::to_string(spec.topk_group) + " of " + std::to_string(spec.n_group) +
                  " groups cannot hold " + std::to_string(spec.top_k) + " experts per token");
    }
  }
  if (sigmoid) {
    // A buffer, as in transformers: it is adjusted outside backprop (auxiliary-loss-free balancing), never trained.
    e_score_correction_bias = register_buffer("e_score_correction_bias", at::empty({E}, options.dtype(at::kFloat)));
  }
}

at::Tensor Router::choose_in_groups(const at::Tensor& scores, at::Tensor (*group_score)(const at::Tensor&)) const {
  const int64_t E = spec_.num_experts, G = spec_.n_group;
  auto group_scores = group_score(scores.view({-1, G, E / G}));  // [N, G]
  auto group_idx = std::get<1>(at::topk(group_scores, spec_.topk_group, -1));
  auto group_mask = at::zeros_like(group_scores).scatter_(1, group_idx, 1);
  auto score_mask = group_mask.unsqueeze(-1).expand({-1, G, E / G}).reshape({-1, E});
  // Experts outside the kept groups score 0 (not -inf), exactly as transformers masks them.
  auto masked = scores.masked_fill(score_mask.to(at::kBool).logical_not(), 0.0);
  return std::get<1>(at::topk(masked, spec_.top_k, -1));
}

namespace {
at::Tensor sum_of_top_two(const at::Tensor& grouped) { return std::get<0>(grouped.topk(2, -1)).sum(-1); }
at::Tensor largest(const at::Tensor& grouped) { return std::get<0>(grouped.max(-1)); }
}  // namespace

LoraPair& Router::add_lora(const LoraSpec& spec) {
  if (spec.dropout > 0) throw Error("LoRA on a router's weight takes no dropout (set lora dropout to 0)");
  return attach_lora_pair(*this, "lora", lora, 1, weight.size(0), weight.size(1), spec, weight.options());
}

void Router::fold_lora() { fold_lora_pair(*this, "lora", lora, weight); }

Routing Router::forward(const at::Tensor& x) const {
  // With a LoRA pair the logits come from W + delta (PEFT adapts the router as a parameter, not as a linear layer).
  const at::Tensor weight = lora ? this->weight + lora->delta().to(this->weight.scalar_type()) : this->weight;
  Routing r;
  switch (spec_.scoring) {
    case RouterScoring::SoftmaxThenTopK: {
      r.logits = at::linear(x, weight, bias);
      auto probs = at::softmax(r.logits, -1, at::kFloat);
      auto [values, idx] = at::topk(probs, spec_.top_k, -1);
      if (spec_.norm_topk_prob) values = values / values.sum(-1, /*keepdim=*/true);
      r.idx = idx;
      r.weight = values.to(r.logits.scalar_type());
      r.probs = probs;
      break;
    }
    case RouterScoring::TopKThenSoftmax: {
      r.logits = at::linear(x, weight, bias);
      auto [values, idx] = at::topk(r.logits, spec_.top_k, -1);
      r.idx = idx;
      r.weight = at::softmax(values, -1);
      break;
    }
    case RouterScoring::SigmoidGroupLimited: {
      r.logits = at::linear(x.to(at::kFloat), weight.to(at::kFloat), bias.defined() ? bias.to(at::kFloat) : bias);
      auto scores = at::sigmoid(r.logits);
      // Chosen in float32 even if the module was cast: a rounded correction bias would change the choice.
      r.idx = choose_in_groups(scores + e_score_correction_bias.to(at::kFloat), &sum_of_top_two);
      r.weight = scores.gather(1, r.idx);
      if (spec_.norm_topk_prob) r.weight = r.weight / (r.weight.sum(-1, /*keepdim=*/true) + 1e-20);
      break;
    }
    case RouterScoring::SoftmaxGroupLimited: {
      r.logits = at::linear(x.to(at::kFloat), weight.to(at::kFloat), bias.defined() ? bias.to(at::kFloat) : bias);
      r.probs = at::softmax(r.logits, -1);
      r.idx = spec_.n_group > 1 ? choose_in_groups(r.probs, &largest) : std::get<1>(at::topk(r.probs, spec_.top_k, -1));
      r.weight = r.probs.gather(1, r.idx);
      if (spec_.norm_topk_prob && spec_.top_k > 1) {
        r.weight = r.weight / (r.weight.sum(-1, /*keepdim=*/true) + 1e-20);
        return r;  // DeepSeek-V2 normalises or scales, never both
      }
      break;
    }
  }
  if (spec_.routed_scaling_factor != 1.0) r.weight = r.weight * spec_.routed_scaling_factor;
  return r;
}

}  // namespace esft::nn
