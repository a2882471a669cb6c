#include "esft/nn/switch_router.h"

#include <ATen/ATen.h>

#include <cmath>
#include <string>

#include "esft/error.h"

namespace esft::nn {

namespace {
at::Tensor all_real_if_undefined(const at::Tensor& token_mask, int64_t n, const at::Device& device) {
  return token_mask.defined() ? token_mask.to(device, at::kBool)
                              : at::ones({n}, at::TensorOptions().dtype(at::kBool).device(device));
}

// ceil(capacity_factor * real tokens / E) on the device (no wait for it), in double as expert_capacity computes it.
at::Tensor capacity_on_device(double capacity_factor, const at::Tensor& real, int64_t num_experts) {
  return (real.sum().to(at::kDouble) * capacity_factor / static_cast<double>(num_experts)).ceil().to(at::kLong);
}
}  // namespace

int64_t expert_capacity(double capacity_factor, int64_t tokens, int64_t num_experts) {
  if (capacity_factor <= 0) return tokens;
  return static_cast<int64_t>(std::ceil(capacity_factor * static_cast<double>(tokens) / static_cast<double>(num_experts)));
}

at::Tensor capacity_drops(const at::Tensor& idx, const at::Tensor& token_mask, int64_t num_experts,
                          const at::Tensor& capacity) {
  const int64_t n = idx.size(0), k = idx.size(1);
  const auto real = all_real_if_undefined(token_mask, n, idx.device());
  // The claims in priority order: rank by rank, tokens in order within a rank.
  const auto claims = idx.t().reshape({-1});                   // [k * N]
  const auto claiming = real.repeat({k});                      // [k * N]
  const auto one_hot = at::one_hot(claims, num_experts).mul_(claiming.unsqueeze(1));  // padding claims nothing
  // Each claim's place in its expert's queue: 1 for the first token to claim that expert.
  const auto place = one_hot.cumsum(0).mul_(one_hot).sum(1);  // 0 for padding
  const auto dropped = place.gt(capacity).logical_or_(claiming.logical_not());
  return dropped.view({k, n}).t().contiguous();
}

at::Tensor capacity_drops(const at::Tensor& idx, const at::Tensor& token_mask, int64_t num_experts, int64_t capacity) {
  return capacity_drops(idx, token_mask, num_experts, at::scalar_tensor(capacity, idx.options().dtype(at::kLong)));
}

SwitchRouter::SwitchRouter(const SwitchRouterSpec& spec, int64_t hidden, const at::TensorOptions& options)
    : spec_(spec) {
  const int64_t E = spec.num_experts;
  if (E < 1) throw Error("a Switch router needs at least one expert, not " + std::to_string(E));
  if (spec.top_k < 1 || spec.top_k > E)
    throw Error("top-k " + std::to_string(spec.top_k) + " is outside [1, " + std::to_string(E) + "] (the number of experts)");
  if (!(spec.jitter >= 0)) throw Error("router jitter must be >= 0, not " + std::to_string(spec.jitter));
  if (!(spec.capacity_factor >= 0))
    throw Error("the capacity factor must be > 0 (or 0 for no limit), not " + std::to_string(spec.capacity_factor));
  weight = register_parameter("weight", at::empty({E, hidden}, options));
  bias = register_parameter("bias", at::empty({E}, options));
}

Routing SwitchRouter::route(const at::Tensor& x, const at::Tensor& token_mask) const {
  Routing r;
  r.logits = at::linear(x, weight, bias);
  auto scores = r.logits;
  // Training only: the reference also jittered at evaluation, which makes validation figures noisy; we do not.
  if (is_training() && spec_.jitter > 0) scores = scores + at::randn_like(scores) * spec_.jitter;
  r.probs = at::softmax(scores, -1, at::kFloat);
  auto [values, idx] = at::topk(r.probs, spec_.top_k, -1);
  r.idx = idx;
  const auto real = all_real_if_undefined(token_mask, x.size(0), x.device());
  if (spec_.capacity_factor > 0) {
    r.dropped = capacity_drops(idx, real, spec_.num_experts, capacity_on_device(spec_.capacity_factor, real, spec_.num_experts));
  } else {
    r.dropped = real.logical_not().unsqueeze(1).expand({-1, spec_.top_k}).contiguous();
  }
  r.weight = values.masked_fill(r.dropped, 0).to(r.logits.scalar_type());
  return r;
}

at::Tensor switch_load_balancing_loss(const at::Tensor& probs, const at::Tensor& first_choice,
                                      const at::Tensor& token_mask) {
  const int64_t E = probs.size(1);
  const auto real = all_real_if_undefined(token_mask, probs.size(0), probs.device()).to(probs.scalar_type()).unsqueeze(1);
  const auto tokens = real.sum().clamp_min(1);
  const auto importance = (probs * real).sum(0) / tokens;
  const auto load = (at::one_hot(first_choice, E).to(probs.scalar_type()) * real).sum(0) / tokens;
  return (importance * load).sum() * static_cast<double>(E);
}

}  // namespace esft::nn
