// The Switch router of tinymoe (core/nn/switch_router.h): capacity drops in claim order, jitter in training only,
// weights from the router probabilities, the load-balancing loss; all against hand-computed values.
#include <ATen/ATen.h>
#include "doctest_torch.h"

#include <cmath>
#include <vector>

#include "esft/error.h"
#include "esft/nn/linear.h"
#include "esft/nn/moe_layer.h"
#include "esft/nn/switch_router.h"

namespace {
at::Tensor bools(std::vector<std::vector<int>> rows) {
  std::vector<at::Tensor> out;
  for (const auto& r : rows) out.push_back(at::tensor(std::vector<int64_t>(r.begin(), r.end())));
  return at::stack(out).to(at::kBool);
}
at::Tensor longs(std::vector<std::vector<int64_t>> rows) {
  std::vector<at::Tensor> out;
  for (const auto& r : rows) out.push_back(at::tensor(r));
  return at::stack(out);
}
}  // namespace

TEST_CASE("switch router: capacity is ceil(factor * tokens / E), unlimited at factor 0") {
  CHECK(esft::nn::expert_capacity(1.5, 10, 4) == 4);  // 3.75
  CHECK(esft::nn::expert_capacity(1.0, 8, 4) == 2);
  CHECK(esft::nn::expert_capacity(1.25, 8, 4) == 3);  // 2.5
  CHECK(esft::nn::expert_capacity(0, 8, 4) == 8);
}

TEST_CASE("switch router: tokens claim capacity in token order: padding claims nothing") {
  const auto idx = longs({{0}, {0}, {1}, {0}, {0}});
  CHECK(at::equal(esft::nn::capacity_drops(idx, {}, 2, 2), bools({{0}, {0}, {0}, {1}, {1}})));
  const auto mask = at::tensor(std::vector<int64_t>{1, 0, 1, 1, 1}).to(at::kBool);
  CHECK(at::equal(esft::nn::capacity_drops(idx, mask, 2, 2), bools({{0}, {1}, {0}, {0}, {1}})));
}

TEST_CASE("switch router: with top-2, every first choice claims before any second choice") {
  // Rank 0: t0 -> 0 (1st), t1 -> 1 (1st), t2 -> 0 (2nd). Rank 1: t0 -> 1 (2nd), t1 -> 0 (3rd: full), t2 -> 1 (full).
  const auto idx = longs({{0, 1}, {1, 0}, {0, 1}});
  CHECK(at::equal(esft::nn::capacity_drops(idx, {}, 2, 2), bools({{0, 0}, {0, 1}, {0, 1}})));
}

TEST_CASE("switch router: logits, probabilities and weights: drops weigh 0: jitter only in training") {
  esft::nn::SwitchRouterSpec spec;
  spec.num_experts = 2;
  spec.top_k = 1;
  spec.jitter = 1.0;
  spec.capacity_factor = 1.0;  // 4 tokens, 2 experts: 2 each
  esft::nn::SwitchRouter router(spec, 2, at::kFloat);
  {
    at::NoGradGuard no_grad;
    router.weight.copy_(at::tensor({1.0f, 0.0f, 0.0f, 1.0f}).view({2, 2}));
    router.bias.copy_(at::tensor({0.5f, 0.0f}));
  }
  const auto x = at::tensor({2.0f, 0.0f, 1.0f, 0.0f, 3.0f, 1.0f, 0.0f, 1.0f}).view({4, 2});
  router.eval();
  const auto r = router.route(x, {});
  // logits: [2.5, 0], [1.5, 0], [3.5, 1], [0.5, 1]; first choices 0, 0, 0, 1; token 2 finds expert 0 full.
  CHECK(at::allclose(r.logits, at::tensor({2.5f, 0.0f, 1.5f, 0.0f, 3.5f, 1.0f, 0.5f, 1.0f}).view({4, 2})));
  CHECK(at::equal(r.idx, longs({{0}, {0}, {0}, {1}})));
  CHECK(at::equal(r.dropped, bools({{0}, {0}, {1}, {0}})));
  const double p0 = 1 / (1 + std::exp(-2.5)), p1 = 1 / (1 + std::exp(-1.5)), p3 = 1 / (1 + std::exp(-0.5));
  CHECK(at::allclose(r.weight, at::tensor({static_cast<float>(p0), static_cast<float>(p1), 0.0f,
                                           static_cast<float>(p3)}).view({4, 1})));
  CHECK(at::equal(router.route(x, {}).probs, r.probs));  // no jitter at evaluation
  router.train();
  const auto jittered = router.route(x, {});
  CHECK(at::equal(jittered.logits, r.logits));  // the logits are reported before jitter
  CHECK_FALSE(at::allclose(jittered.probs, r.probs));
}

TEST_CASE("switch router: the load-balancing loss is E * sum(importance * load) over real tokens") {
  const auto probs = at::tensor({0.9, 0.1, 0.6, 0.4, 0.3, 0.7}).view({3, 2});
  const auto first = at::tensor(std::vector<int64_t>{0, 0, 1});
  // importance [0.6, 0.4], load [2/3, 1/3]
  CHECK(esft::nn::switch_load_balancing_loss(probs, first, {}).item<double>() ==
        doctest::Approx(2 * (0.6 * 2 / 3.0 + 0.4 / 3.0)));
  // without the last token: importance [0.75, 0.25], load [1, 0]
  const auto mask = at::tensor(std::vector<int64_t>{1, 1, 0}).to(at::kBool);
  CHECK(esft::nn::switch_load_balancing_loss(probs, first, mask).item<double>() == doctest::Approx(1.5));
}

TEST_CASE("switch router: top-k > E and a negative capacity factor are refused") {
  esft::nn::SwitchRouterSpec spec;
  spec.num_experts = 4;
  spec.top_k = 5;
  CHECK_THROWS_WITH_AS(esft::nn::SwitchRouter(spec, 8, at::kFloat), doctest::Contains("top-k 5 is outside [1, 4]"),
                       esft::Error);
  spec.top_k = 1;
  spec.capacity_factor = -1;
  CHECK_THROWS_WITH_AS(esft::nn::SwitchRouter(spec, 8, at::kFloat), doctest::Contains("capacity factor must be > 0"),
                       esft::Error);
}

TEST_CASE("layer norm: equals the formula with the biased variance") {
  esft::nn::LayerNorm norm(3, 1e-5, at::kDouble);
  {
    at::NoGradGuard no_grad;
    norm.weight.copy_(at::tensor({1.0, 2.0, 0.5}));
    norm.bias.copy_(at::tensor({0.0, 1.0, -1.0}));
  }
  const auto y = norm.forward(at::tensor({1.0, 2.0, 6.0}).view({1, 3}));
  const double var = (4 + 1 + 9) / 3.0, s = std::sqrt(var + 1e-5);  // mean 3
  CHECK(at::allclose(y, at::tensor({-2 / s, 2 * (-1 / s) + 1, 0.5 * (3 / s) - 1}).view({1, 3})));
}

TEST_CASE("switch router: in a MoE layer, a dropped token's MoE output is 0 and the event reports the drop") {
  esft::nn::SwitchRouterSpec spec;
  spec.num_experts = 2;
  spec.capacity_factor = 1.0;
  auto router = std::make_shared<esft::nn::SwitchRouter>(spec, 4, at::kFloat);
  const esft::ParamNaming naming({{esft::Role::EXPERT_GATE, "l.{layer}.e.{expert}.gate"},
                                  {esft::Role::EXPERT_UP, "l.{layer}.e.{expert}.up"},
                                  {esft::Role::EXPERT_DOWN, "l.{layer}.e.{expert}.down"}});
  esft::nn::MoESpec moe;
  moe.router_name = "router";
  moe.experts.intermediate = 8;
  esft::nn::MoELayer layer(router, moe, 4, 0, naming, at::kFloat);
  at::manual_seed(5);
  at::NoGradGuard no_grad;
  for (auto& p : layer.parameters()) p.normal_();
  router->bias.fill_(0);
  router->weight.zero_();
  router->weight[0][0] = 1;  // tokens with a positive first feature choose expert 0
  const auto x = at::tensor({1.0f, 0.f, 0.f, 0.f, 2.f, 1.f, 0.f, 0.f, 3.f, 0.f, 1.f, 0.f, -1.f, 0.f, 0.f, 1.f}).view({1, 4, 4});
  struct Recorder : esft::RouterHook {
    esft::RouterEvent event;
    void on_route(const esft::RouterEvent& e) override { event = e; }
  } recorder;
  std::vector<esft::RouterHook*> hooks{&recorder};
  esft::nn::RoutingContext routing;
  routing.hooks = &hooks;
  layer.eval();
  const auto y = layer.forward(x, routing);
  CHECK(layer.num_experts() == 2);
  CHECK(at::equal(recorder.event.topk_idx, longs({{0}, {0}, {0}, {1}})));
  CHECK(at::equal(recorder.event.dropped, bools({{0}, {0}, {1}, {0}})));  // capacity 2: token 2 finds expert 0 full
  CHECK(recorder.event.probs.defined());
  CHECK(at::equal(y[0][2], at::zeros({4})));
  CHECK(y[0][0].abs().sum().item<double>() > 0);
  CHECK(y[0][3].abs().sum().item<double>() > 0);
}
