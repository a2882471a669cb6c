#include "esft/model/boids_losses.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <limits>
#include <string>

#include "esft/error.h"

namespace esft {

namespace {
constexpr double kEps = 1e-8;

at::Tensor kl(const at::Tensor& p, const at::Tensor& q) { return (p * ((p + kEps).log() - (q + kEps).log())).sum(-1); }
}  // namespace

at::Tensor js_divergence(const at::Tensor& p, const at::Tensor& q) {
  const auto m = (p + q) * 0.5;
  return (kl(p, m) + kl(q, m)) * 0.5;
}

at::Tensor gates_from_topk(const at::Tensor& probs, const at::Tensor& idx) {
  const auto chosen = probs.gather(1, idx);
  return at::zeros_like(probs).scatter(1, idx, chosen / chosen.sum(1, /*keepdim=*/true));
}

at::Tensor boids_gates(const at::Tensor& probs, const at::Tensor& idx) {
  return idx.size(1) == 1 ? probs : gates_from_topk(probs, idx);
}

at::Tensor boids_cohesion(const at::Tensor& gates, const at::Tensor& hidden, int64_t k_nn) {
  const int64_t n = gates.size(0);
  if (k_nn < 1 || k_nn >= n) {
    throw Error("Boids cohesion needs 1 <= k_nn < tokens, not k_nn " + std::to_string(k_nn) + " with " +
                std::to_string(n) + " tokens");
  }
  const auto unit = hidden / hidden.norm(2, -1, /*keepdim=*/true).clamp_min(kEps);
  // S with its diagonal zeroed; a token is never its own neighbour, even when fewer than k_nn others are similar.
  const auto similarity = at::matmul(unit, unit.t()).fill_diagonal_(0);  // [N, N]
  const auto choosable = similarity.detach().clone().fill_diagonal_(-std::numeric_limits<double>::infinity());
  const auto neighbours = std::get<1>(at::topk(choosable, k_nn, -1));   // [N, k_nn]
  const auto values = similarity.gather(1, neighbours);
  const auto js = js_divergence(gates.unsqueeze(1), gates.index_select(0, neighbours.reshape({-1})).view({n, k_nn, -1}));
  return (values * js).mean();
}

at::Tensor boids_separation(const at::Tensor& gates, double tau) {
  const auto load = gates.sum(0);
  return (load / load.mean() - tau).clamp_min(0).pow(2).mean();
}

at::Tensor boids_alignment(const at::Tensor& gates) {
  return js_divergence(gates, gates.mean(0, /*keepdim=*/true).expand_as(gates)).mean();
}

double boids_warmup(int64_t step, int64_t total_steps, double warmup_frac) {
  const double span = warmup_frac * static_cast<double>(total_steps);
  if (span <= 0) return 1.0;
  return std::min(1.0, static_cast<double>(step) / span);
}

BoidsTerms boids_loss(const at::Tensor& gates, const at::Tensor& hidden, const BoidsSettings& s, double scale) {
  BoidsTerms t;
  t.cohesion = boids_cohesion(gates, hidden, s.k_nn);
  t.separation = boids_separation(gates, s.tau);
  t.alignment = boids_alignment(gates);
  t.total = (t.cohesion * s.cohesion + t.separation * s.separation + t.alignment * s.alignment) * scale;
  return t;
}

}  // namespace esft
