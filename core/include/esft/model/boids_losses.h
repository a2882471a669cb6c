#pragma once
// Boids regularisation of a router (Plan-B; shared/spec/VARIANTS.md §3): tokens are flocking agents in routing
// space. For one MoE layer, gates g [N, E] are each token's gate distribution after top-k masking and
// renormalisation (gates_from_topk), hidden z [N, D] its final hidden state; only real tokens are passed in.
// JS(p, q) = (KL(p || m) + KL(q || m)) / 2 with m = (p + q) / 2 and eps = 1e-8 inside the logarithms.
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace esft {

// The row-wise Jensen-Shannon divergence of distributions p and q [..., E] -> [...] (natural log).
at::Tensor js_divergence(const at::Tensor& p, const at::Tensor& q);

// probs [N, E], idx [N, k] -> g [N, E]: the chosen experts' probabilities renormalised to sum 1, zero elsewhere.
at::Tensor gates_from_topk(const at::Tensor& probs, const at::Tensor& idx);

// The gates Boids regularises: gates_from_topk for top-k > 1; for top-1 routing the router's whole distribution
// `probs`. The renormalised top-1 gate is a one-hot constant, through which no gradient would reach the router, so
// Boids would not regularise a Switch router at all (shared/spec/VARIANTS.md §3, "gates under top-1").
at::Tensor boids_gates(const at::Tensor& probs, const at::Tensor& idx);

// Cohesion: S = cosine(z_i, z_j) with the diagonal zeroed; each token keeps its k_nn most similar other tokens
// (never itself); the mean over the kept pairs of S_ij * JS(g_i || g_j). Throws esft::Error unless 1 <= k_nn < N.
at::Tensor boids_cohesion(const at::Tensor& gates, const at::Tensor& hidden, int64_t k_nn);

// Separation: soft loads c_e = sum_i g_i[e] (differentiable, unlike hard top-1 counts);
// mean_e max(0, c_e / mean(c) - tau)^2.
at::Tensor boids_separation(const at::Tensor& gates, double tau);

// Alignment: mean_i JS(g_i || mean_j g_j).
at::Tensor boids_alignment(const at::Tensor& gates);

struct BoidsSettings {
  double cohesion = 0.1, separation = 0.05, alignment = 0.01;  // lambda_c, lambda_s, lambda_a
  double tau = 1.5;          // sep_tau
  int64_t k_nn = 8;
  double warmup_frac = 0.1;  // of the total steps
};

// The warm-up factor s = min(1, step / (warmup_frac * total_steps)); 1 without warm-up.
double boids_warmup(int64_t step, int64_t total_steps, double warmup_frac);

struct BoidsTerms {
  at::Tensor cohesion, separation, alignment;  // unweighted
  at::Tensor total;                            // s * (lambda_c L_coh + lambda_s L_sep + lambda_a L_ali)
};
BoidsTerms boids_loss(const at::Tensor& gates, const at::Tensor& hidden, const BoidsSettings& settings, double scale);

}  // namespace esft
