#include "esft/model/losses.h"

#include <ATen/ATen.h>

namespace esft {

at::Tensor causal_lm_loss(const at::Tensor& logits, const at::Tensor& labels) {
  const int64_t V = logits.size(-1);
  auto shifted = at::constant_pad_nd(labels, {0, 1}, kIgnoreIndex).narrow(1, 1, labels.size(1));
  return at::cross_entropy_loss(logits.to(at::kFloat).reshape({-1, V}), shifted.reshape({-1}), {},
                                at::Reduction::Mean, kIgnoreIndex);
}

at::Tensor labels_from_inputs(const at::Tensor& input_ids, const at::Tensor& attention_mask) {
  if (!attention_mask.defined()) return input_ids.clone();
  return input_ids.masked_fill(attention_mask.to(at::kBool).logical_not(), kIgnoreIndex);
}

at::Tensor load_balancing_loss(const std::vector<at::Tensor>& router_logits, int64_t top_k,
                               const at::Tensor& token_mask) {
  auto logits = at::cat(router_logits, 0);
  const int64_t E = logits.size(-1);
  const int64_t layers = static_cast<int64_t>(router_logits.size());
  auto probs = at::softmax(logits, -1);
  auto selected = std::get<1>(at::topk(probs, top_k, -1));
  auto expert_mask = at::one_hot(selected, E).to(probs.scalar_type());  // [layers*N, k, E]
  at::Tensor tokens_per_expert, prob_per_expert;
  if (!token_mask.defined()) {
    tokens_per_expert = expert_mask.mean(0);
    prob_per_expert = probs.mean(0);
  } else {
    auto m = token_mask.to(probs.scalar_type()).repeat({layers});  // [layers*N]
    tokens_per_expert = (expert_mask * m.view({-1, 1, 1})).sum(0) / m.sum();
    prob_per_expert = (probs * m.view({-1, 1})).sum(0) / m.sum();
  }
  return (tokens_per_expert * prob_per_expert.unsqueeze(0)).sum() * E;
}

}  // namespace esft
