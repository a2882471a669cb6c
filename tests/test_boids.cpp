// Boids regularisation (core/model/boids_losses.h) against hand-computed values and against a plain loop over
// token pairs in double precision, written from shared/spec/VARIANTS.md §3 independently of the tensor code.
#include <ATen/ATen.h>
#include "doctest_torch.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "esft/error.h"
#include "esft/model/boids_losses.h"

namespace {

using Row = std::vector<double>;

std::vector<Row> rows_of(const at::Tensor& t) {
  const auto d = t.to(at::kDouble).contiguous();
  std::vector<Row> out(static_cast<size_t>(d.size(0)));
  for (int64_t i = 0; i < d.size(0); ++i) out[i].assign(d[i].data_ptr<double>(), d[i].data_ptr<double>() + d.size(1));
  return out;
}

double js(const Row& p, const Row& q) {
  double a = 0, b = 0;
  for (size_t e = 0; e < p.size(); ++e) {
    const double m = (p[e] + q[e]) / 2;
    a += p[e] * (std::log(p[e] + 1e-8) - std::log(m + 1e-8));
    b += q[e] * (std::log(q[e] + 1e-8) - std::log(m + 1e-8));
  }
  return (a + b) / 2;
}

double cosine(const Row& a, const Row& b) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t d = 0; d < a.size(); ++d) ab += a[d] * b[d], aa += a[d] * a[d], bb += b[d] * b[d];
  return ab / (std::sqrt(aa) * std::sqrt(bb));
}

double cohesion_loop(const std::vector<Row>& g, const std::vector<Row>& z, size_t k_nn) {
  double sum = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    std::vector<std::pair<double, size_t>> s;
    for (size_t j = 0; j < g.size(); ++j)
      if (j != i) s.push_back({cosine(z[i], z[j]), j});  // neighbours are other tokens
    std::sort(s.begin(), s.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    for (size_t n = 0; n < k_nn; ++n) sum += s[n].first * js(g[i], g[s[n].second]);
  }
  return sum / static_cast<double>(g.size() * k_nn);
}

double alignment_loop(const std::vector<Row>& g) {
  Row mean(g[0].size(), 0);
  for (const auto& r : g)
    for (size_t e = 0; e < r.size(); ++e) mean[e] += r[e] / static_cast<double>(g.size());
  double sum = 0;
  for (const auto& r : g) sum += js(r, mean);
  return sum / static_cast<double>(g.size());
}

// Random gate distributions: top-2 of a softmax, renormalised.
at::Tensor random_gates(int64_t n, int64_t e) {
  const auto probs = at::softmax(at::randn({n, e}, at::kDouble) * 2, -1);
  return esft::gates_from_topk(probs, std::get<1>(probs.topk(2, -1)));
}

}  // namespace

TEST_CASE("boids: Jensen-Shannon divergence by hand") {
  const auto p = at::tensor({0.5, 0.5}), q = at::tensor({0.9, 0.1});
  const double expected = (0.5 * std::log(0.5 / 0.7) + 0.5 * std::log(0.5 / 0.3) + 0.9 * std::log(0.9 / 0.7) +
                           0.1 * std::log(0.1 / 0.3)) / 2;
  CHECK(esft::js_divergence(p, q).item<double>() == doctest::Approx(expected).epsilon(1e-6));
  CHECK(esft::js_divergence(at::tensor({1.0, 0.0}), at::tensor({0.0, 1.0})).item<double>() ==
        doctest::Approx(std::log(2.0)).epsilon(1e-6));
  CHECK(esft::js_divergence(q, q).item<double>() == doctest::Approx(0).epsilon(1e-12));
}

TEST_CASE("boids: gates keep the top-k probabilities, renormalised") {
  const auto g = esft::gates_from_topk(at::tensor({0.5, 0.3, 0.2}).view({1, 3}),
                                       at::tensor(std::vector<int64_t>{0, 1}).view({1, 2}));
  CHECK(at::allclose(g, at::tensor({0.625, 0.375, 0.0}).view({1, 3})));
}

TEST_CASE("boids: separation penalises experts loaded over tau times the mean, by hand") {
  // loads [3, 1, 0], mean 4/3: ratios [2.25, 0.75, 0]; over tau 1.5 by [0.75, 0, 0]
  const auto g = at::tensor({1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0}).view({4, 3});
  CHECK(esft::boids_separation(g, 1.5).item<double>() == doctest::Approx(0.75 * 0.75 / 3));
  CHECK(esft::boids_separation(g, 3.0).item<double>() == 0);
}

TEST_CASE("boids: cohesion and alignment equal a plain loop over tokens") {
  at::manual_seed(7);
  const auto g = random_gates(12, 6);
  const auto z = at::randn({12, 5}, at::kDouble);
  CHECK(esft::boids_cohesion(g, z, 4).item<double>() ==
        doctest::Approx(cohesion_loop(rows_of(g), rows_of(z), 4)).epsilon(1e-9));
  CHECK(esft::boids_alignment(g).item<double>() == doctest::Approx(alignment_loop(rows_of(g))).epsilon(1e-9));
  // Token 0 is dissimilar to every other: its neighbours are still two other tokens, never itself.
  const auto apart = at::tensor({1.0, 0.0, -1.0, 0.0, -1.0, 0.1, -1.0, -0.1}).view({4, 2});
  const auto g4 = random_gates(4, 3);
  CHECK(esft::boids_cohesion(g4, apart, 2).item<double>() ==
        doctest::Approx(cohesion_loop(rows_of(g4), rows_of(apart), 2)).epsilon(1e-9));
  // Every token routed alike: nothing to align, nothing to pull together.
  const auto same = g[0].unsqueeze(0).expand({12, 6}).contiguous();
  CHECK(esft::boids_alignment(same).item<double>() == doctest::Approx(0).epsilon(1e-12));
  CHECK(esft::boids_cohesion(same, z, 4).item<double>() == doctest::Approx(0).epsilon(1e-12));
}

TEST_CASE("boids: the weighted sum with warm-up, and gradients reach the gates") {
  at::manual_seed(8);
  const auto g = random_gates(10, 4).requires_grad_(true);
  const auto z = at::randn({10, 3}, at::kDouble);
  esft::BoidsSettings s;
  s.k_nn = 3;
  CHECK(esft::boids_warmup(5, 100, 0.1) == doctest::Approx(0.5));
  CHECK(esft::boids_warmup(20, 100, 0.1) == 1.0);
  CHECK(esft::boids_warmup(0, 100, 0.0) == 1.0);
  const auto t = esft::boids_loss(g, z, s, 0.5);
  const double expected = 0.5 * (0.1 * t.cohesion.item<double>() + 0.05 * t.separation.item<double>() +
                                 0.01 * t.alignment.item<double>());
  CHECK(t.total.item<double>() == doctest::Approx(expected));
  t.total.backward();
  CHECK(g.grad().abs().sum().item<double>() > 0);
}

TEST_CASE("boids: k_nn must be below the number of tokens") {
  const auto g = random_gates(4, 3);
  CHECK_THROWS_WITH_AS(esft::boids_cohesion(g, at::randn({4, 2}, at::kDouble), 4),
                       doctest::Contains("k_nn 4 with 4 tokens"), esft::Error);
}
