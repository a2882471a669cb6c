// The one attention implementation against a naive per-token, per-head reference in double precision, for the
// combinations the fixtures do not reach: a whole-width q/k norm with grouped kv heads and clipping (olmoe's
// options together), per-head norm with partial rotary and a sliding window, and sinks with a window and biases.
// Incremental decoding with the cache must give the same outputs as one full pass.
#include <ATen/ATen.h>
#include "doctest_torch.h"

#include <cmath>
#include <limits>

#include "esft/nn/attention.h"
#include "esft/nn/kv_cache.h"
#include "esft/nn/rotary.h"

namespace {

using esft::nn::AttentionSpec;
using esft::nn::QKNorm;

constexpr int64_t B = 2, T = 7, H = 32;
constexpr double kTheta = 10000.0;

at::Tensor rms(const at::Tensor& x, const at::Tensor& w, double eps) {
  return w * x / at::sqrt((x * x).mean() + eps);
}

// Rotates the first `rotary_dim` channels of one head vector u [D] by position p (rotate_half convention).
at::Tensor rotate(const at::Tensor& u, int64_t p, int64_t rotary_dim) {
  auto out = u.clone();
  const int64_t half = rotary_dim / 2;
  for (int64_t i = 0; i < half; ++i) {
    const double f = std::pow(kTheta, -2.0 * static_cast<double>(i) / static_cast<double>(rotary_dim));
    const double c = std::cos(static_cast<double>(p) * f), s = std::sin(static_cast<double>(p) * f);
    const double a = u[i].item<double>(), b = u[i + half].item<double>();
    out[i] = a * c - b * s;
    out[i + half] = b * c + a * s;
  }
  return out;
}

// Attention of token t in batch row b, written out the slow way.
struct Reference {
  const AttentionSpec& spec;
  const esft::nn::Attention& attn;
  int64_t rotary_dim, window;
  at::Tensor x, mask;  // double

  at::Tensor weight(const std::shared_ptr<esft::nn::Linear>& l) const { return l->weight.to(at::kDouble); }
  at::Tensor project(const std::shared_ptr<esft::nn::Linear>& l, const at::Tensor& v) const {
    auto y = at::mv(weight(l), v);
    return l->bias.defined() ? y + l->bias.to(at::kDouble) : y;
  }

  // q heads [nh, D] and k, v heads [nkv, D] of token (b, s), rotated to position s.
  void qkv(int64_t b, int64_t s, at::Tensor& q, at::Tensor& k, at::Tensor& v) const {
    const int64_t D = spec.head_dim;
    auto xs = x[b][s];
    q = project(attn.q_proj, xs), k = project(attn.k_proj, xs), v = project(attn.v_proj, xs);
    if (spec.qk_norm == QKNorm::Full) {
      q = rms(q, attn.q_norm->weight.to(at::kDouble), spec.norm_eps);
      k = rms(k, attn.k_norm->weight.to(at::kDouble), spec.norm_eps);
    }
    if (spec.clip_qkv > 0) {
      q = q.clamp(-spec.clip_qkv, spec.clip_qkv), k = k.clamp(-spec.clip_qkv, spec.clip_qkv);
      v = v.clamp(-spec.clip_qkv, spec.clip_qkv);
    }
    q = q.view({spec.num_heads, D}).clone(), k = k.view({spec.num_kv_heads, D}).clone(), v = v.view({spec.num_kv_heads, D});
    for (int64_t h = 0; h < spec.num_heads; ++h) {
      auto u = q[h];
      if (spec.qk_norm == QKNorm::PerHead) u = rms(u, attn.q_norm->weight.to(at::kDouble), spec.norm_eps);
      q[h] = rotate(u, s, rotary_dim);
    }
    for (int64_t h = 0; h < spec.num_kv_heads; ++h) {
      auto u = k[h];
      if (spec.qk_norm == QKNorm::PerHead) u = rms(u, attn.k_norm->weight.to(at::kDouble), spec.norm_eps);
      k[h] = rotate(u, s, rotary_dim);
    }
  }

  at::Tensor output(int64_t b, int64_t t) const {
    const int64_t D = spec.head_dim, group = spec.num_heads / spec.num_kv_heads;
    at::Tensor q, k_unused, v_unused;
    qkv(b, t, q, k_unused, v_unused);
    std::vector<int64_t> keys;
    std::vector<at::Tensor> ks, vs;
    for (int64_t s = 0; s <= t; ++s) {
      if (mask[b][s].item<double>() == 0 || (window > 0 && s <= t - window)) continue;
      at::Tensor qs, k, v;
      qkv(b, s, qs, k, v);
      keys.push_back(s), ks.push_back(k), vs.push_back(v);
    }
    auto heads = at::zeros({spec.num_heads, D}, at::kDouble);
    for (int64_t h = 0; h < spec.num_heads; ++h) {
      const int64_t j = h / group;
      std::vector<double> logits;
      for (size_t i = 0; i < keys.size(); ++i) logits.push_back(at::dot(q[h], ks[i][j]).item<double>() / std::sqrt(D));
      double sink = spec.sinks ? attn.sinks[h].item<double>() : -std::numeric_limits<double>::infinity();
      double top = sink;
      for (double l : logits) top = std::max(top, l);
      double total = std::exp(sink - top);
      for (double l : logits) total += std::exp(l - top);
      for (size_t i = 0; i < keys.size(); ++i) heads[h] += std::exp(logits[i] - top) / total * vs[i][j];
    }
    return project(attn.o_proj, heads.reshape({-1}));
  }
};

void check_against_reference(const AttentionSpec& spec, int64_t rotary_dim, int64_t window) {
  at::manual_seed(7);
  auto attn = std::make_shared<esft::nn::Attention>(spec, 0, at::TensorOptions().dtype(at::kFloat));
  {
    at::NoGradGuard no_grad;
    for (auto& p : attn->named_parameters()) {
      const bool norm = p.key().find("norm") != std::string::npos;
      if (norm) p.value().uniform_(0.7, 1.3);
      else p.value().normal_(0, p.key() == "sinks" ? 1.0 : 0.3);
    }
  }
  auto x = at::randn({B, T, H});
  auto mask = at::ones({B, T}, at::kLong);
  mask[1].narrow(0, T - 2, 2).fill_(0);

  esft::nn::RopeSpec rope;
  rope.head_dim = spec.head_dim;
  rope.rotary_dim = rotary_dim;
  rope.theta = kTheta;
  esft::nn::RotaryEmbedding rotary(rope, at::kCPU, at::kFloat);
  auto positions = at::arange(T, at::kLong).unsqueeze(0);
  auto [cos, sin] = rotary.cos_sin(positions, at::kFloat);
  auto bias = esft::nn::causal_attention_bias(mask, B, T, 0, at::kFloat, at::kCPU, window);

  at::NoGradGuard no_grad;
  auto ours = attn->forward(x, cos, sin, bias, nullptr);
  Reference ref{spec, *attn, rotary_dim, window, x.to(at::kDouble), mask.to(at::kDouble)};
  double worst = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      if (mask[b][t].item<int64_t>()) worst = std::max(worst, (ours[b][t].to(at::kDouble) - ref.output(b, t)).abs().max().item<double>());
  CHECK(worst <= 1e-5);

  // One token at a time through the cache: the same outputs as the full pass (first batch row, no padding).
  esft::nn::KVCache cache(1);
  auto row = x.narrow(0, 0, 1);
  for (int64_t t = 0; t < T; ++t) {
    auto [c, s] = rotary.cos_sin(at::full({1, 1}, t, at::kLong), at::kFloat);
    auto step_bias = esft::nn::causal_attention_bias(at::ones({1, t + 1}, at::kLong), 1, 1, t, at::kFloat, at::kCPU, window);
    auto y = attn->forward(row.narrow(1, t, 1), c, s, step_bias, &cache);
    CHECK((y[0][0] - ours[0][t]).abs().max().item<double>() <= 1e-5);
  }
}

AttentionSpec base_spec() {
  AttentionSpec s;
  s.hidden_size = H;
  s.num_heads = 4;
  s.num_kv_heads = 2;
  s.head_dim = 8;
  s.norm_eps = 1e-6;
  return s;
}

}  // namespace

TEST_CASE("attention: whole-width q/k norm with grouped kv heads and clipping") {
  auto s = base_spec();
  s.qk_norm = QKNorm::Full;
  s.clip_qkv = 0.4;
  s.qkv_bias = true;
  check_against_reference(s, 8, 0);
}

TEST_CASE("attention: per-head q/k norm, partial rotary and a sliding window") {
  auto s = base_spec();
  s.qk_norm = QKNorm::PerHead;
  s.qkv_bias = true;
  check_against_reference(s, 4, 3);
}

TEST_CASE("attention: sinks with a sliding window and biases everywhere") {
  auto s = base_spec();
  s.num_kv_heads = 1;
  s.sinks = true;
  s.qkv_bias = s.o_bias = true;
  check_against_reference(s, 8, 2);
}
