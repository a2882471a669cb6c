#include "esft/model/losses.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <algorithm>

namespace esft {

namespace {
// Position t's target: labels[t+1], kIgnoreIndex after the last position. [B*T]
at::Tensor next_token_targets(const at::Tensor& labels) {
  return at::constant_pad_nd(labels, {0, 1}, kIgnoreIndex).narrow(1, 1, labels.size(1)).reshape({-1});
}

}  // namespace

at::Tensor causal_lm_loss(const at::Tensor& logits, const at::Tensor& labels) {
  const int64_t V = logits.size(-1);
  return at::cross_entropy_loss(logits.to(at::kFloat).reshape({-1, V}), next_token_targets(labels), {},
                                at::Reduction::Mean, kIgnoreIndex);
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class ChunkedCrossEntropy : public torch::autograd::Function<ChunkedCrossEntropy> {
 public:
  // hidden [N, H], weight [V, H], targets [N] -> mean cross-entropy over the targets that are not kIgnoreIndex.
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& hidden, const at::Tensor& weight,
                            const at::Tensor& targets, int64_t chunk) {
    const int64_t N = hidden.size(0);
    auto valid = targets.ne(kIgnoreIndex);
    auto count = valid.sum().to(at::kFloat);
    auto total = at::zeros({}, hidden.options().dtype(at::kFloat));
    for (int64_t start = 0; start < N; start += chunk) {
      const int64_t n = std::min(chunk, N - start);
      auto logits = at::mm(hidden.narrow(0, start, n), weight.t()).to(at::kFloat);
      auto t = targets.narrow(0, start, n);
      auto picked = logits.gather(1, t.clamp_min(0).unsqueeze(1)).squeeze(1);
      auto nll = (at::logsumexp(logits, {1}) - picked).masked_fill(valid.narrow(0, start, n).logical_not(), 0);
      total.add_(nll.sum());
    }
    ctx->save_for_backward({hidden, weight, targets, count});
    ctx->saved_data["chunk"] = chunk;
    return total / count;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto &hidden = saved[0], &weight = saved[1], &targets = saved[2], &count = saved[3];
    const int64_t chunk = ctx->saved_data["chunk"].toInt(), N = hidden.size(0);
    const bool want_hidden = ctx->needs_input_grad(0), want_weight = ctx->needs_input_grad(1);
    auto scale = grad_outputs[0].to(at::kFloat) / count;
    at::Tensor g_hidden, g_weight;
    if (want_hidden) g_hidden = at::empty_like(hidden);
    if (want_weight) g_weight = at::zeros(weight.sizes(), weight.options().dtype(at::kFloat));
    for (int64_t start = 0; start < N; start += chunk) {
      const int64_t n = std::min(chunk, N - start);
      const auto h = hidden.narrow(0, start, n);
      const auto t = targets.narrow(0, start, n);
      // d loss / d logits = (softmax - one_hot(target)) * scale on counted rows, 0 on ignored ones.
      auto g = at::softmax(at::mm(h, weight.t()).to(at::kFloat), 1);
      g.scatter_add_(1, t.clamp_min(0).unsqueeze(1), at::full({n, 1}, -1.0, g.options()));
      g.mul_(t.ne(kIgnoreIndex).unsqueeze(1).to(at::kFloat) * scale);
      const auto g_typed = g.to(hidden.scalar_type());
      if (want_hidden) {
        auto rows = g_hidden.narrow(0, start, n);
        at::mm_out(rows, g_typed, weight);
      }
      if (want_weight) g_weight.add_(at::mm(g_typed.t(), h).to(at::kFloat));
    }
    if (want_weight) g_weight = g_weight.to(weight.scalar_type());
    return {g_hidden, g_weight, at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor chunked_causal_lm_loss(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& labels,
                                  int64_t chunk_tokens) {
  const int64_t H = hidden.size(-1);
  return ChunkedCrossEntropy::apply(hidden.reshape({-1, H}).contiguous(), weight, next_token_targets(labels),
                                    std::max<int64_t>(1, chunk_tokens));
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
