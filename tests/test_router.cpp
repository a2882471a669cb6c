// DeepSeek-V2's softmax router (RouterScoring::SoftmaxGroupLimited): greedy and group-limited choice, scaling, and
// DeepSeek's own norm_topk_prob rule (normalise or scale, never both), on hand-made logits.
#include <ATen/ATen.h>
#include "doctest_torch.h"

#include "esft/error.h"
#include "esft/nn/router.h"

namespace {

using esft::nn::Router;
using esft::nn::RouterScoring;
using esft::nn::RouterSpec;

// A router whose weight is the identity, so that the logits are the input rows themselves.
Router identity_router(RouterSpec spec) {
  spec.scoring = RouterScoring::SoftmaxGroupLimited;
  Router r(spec, spec.num_experts, at::TensorOptions().dtype(at::kFloat));
  at::NoGradGuard no_grad;
  r.weight.copy_(at::eye(spec.num_experts));
  return r;
}

std::vector<int64_t> sorted_choice(const at::Tensor& idx) {
  auto s = std::get<0>(idx.sort(-1)).reshape({-1});
  return std::vector<int64_t>(s.data_ptr<int64_t>(), s.data_ptr<int64_t>() + s.numel());
}

}  // namespace

TEST_CASE("router: DeepSeek-V2 greedy picks the top-k probabilities and scales them") {
  RouterSpec spec;
  spec.num_experts = 8, spec.top_k = 2, spec.routed_scaling_factor = 2.5;
  const auto logits = at::tensor({0.1f, 3.0f, -1.0f, 2.0f, 0.5f, 0.0f, 2.5f, -2.0f}).unsqueeze(0);
  const auto r = identity_router(spec).forward(logits);
  CHECK(sorted_choice(r.idx) == std::vector<int64_t>{1, 6});
  const auto probs = at::softmax(logits, -1);
  CHECK(at::allclose(r.probs, probs));
  CHECK(at::allclose(r.weight, probs.gather(1, r.idx) * 2.5));
  CHECK((r.logits.scalar_type() == at::kFloat));
}

TEST_CASE("router: DeepSeek-V2 group-limited greedy keeps the experts of the groups with the largest maximum") {
  RouterSpec spec;
  spec.num_experts = 8, spec.top_k = 2, spec.n_group = 4, spec.topk_group = 2;
  // Groups {0,1} {2,3} {4,5} {6,7}: maxima 3.0, 2.9, 2.95, 1.0, so groups 0 and 2 are kept. The top 2 are the
  // same either way (experts 0 and 4); the third is expert 5 (2.8) within the kept groups, expert 3 (2.9) greedily.
  const auto logits = at::tensor({3.0f, 0.0f, 0.0f, 2.9f, 2.95f, 2.8f, 1.0f, 0.0f}).unsqueeze(0);
  CHECK(sorted_choice(identity_router(spec).forward(logits).idx) == std::vector<int64_t>{0, 4});
  spec.n_group = 1, spec.topk_group = 1;
  CHECK(sorted_choice(identity_router(spec).forward(logits).idx) == std::vector<int64_t>{0, 4});
  spec.top_k = 3, spec.n_group = 4, spec.topk_group = 2;
  CHECK(sorted_choice(identity_router(spec).forward(logits).idx) == std::vector<int64_t>{0, 4, 5});
  spec.n_group = 1, spec.topk_group = 1;
  CHECK(sorted_choice(identity_router(spec).forward(logits).idx) == std::vector<int64_t>{0, 3, 4});
}

TEST_CASE("router: DeepSeek-V2 with norm_topk_prob normalises the weights and does not scale them") {
  RouterSpec spec;
  spec.num_experts = 8, spec.top_k = 3, spec.norm_topk_prob = true, spec.routed_scaling_factor = 16;
  const auto logits = at::randn({5, 8});
  const auto r = identity_router(spec).forward(logits);
  CHECK(at::allclose(r.weight.sum(-1), at::ones({5})));
  spec.top_k = 1;  // a single expert is never normalised: its probability is scaled
  const auto one = identity_router(spec).forward(logits);
  CHECK(at::allclose(one.weight, std::get<0>(at::softmax(logits, -1).max(-1, true)) * 16));
}

TEST_CASE("router: DeepSeek-V2 groups must divide the experts and hold the top-k") {
  RouterSpec spec;
  spec.num_experts = 8, spec.top_k = 4, spec.n_group = 3, spec.topk_group = 1;
  CHECK_THROWS_WITH_AS(identity_router(spec), doctest::Contains("n_group 3"), esft::Error);
  spec.n_group = 4, spec.topk_group = 1;  // 1 group of 2 experts cannot hold 4
  CHECK_THROWS_WITH_AS(identity_router(spec), doctest::Contains("topk_group 1"), esft::Error);
}
