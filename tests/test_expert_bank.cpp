// The expert bank's two kernels against each other and against plain per-token math, the packed halves surviving
// Module::to, and the grouped kernel's size requirement. (Parity with transformers is in the family parity tests.)
#include <ATen/ATen.h>
#include "doctest_torch.h"

#include "esft/error.h"
#include "esft/nn/expert_bank.h"

namespace {

using esft::nn::ExpertBank;
using esft::nn::ExpertBankSpec;
using esft::nn::ExpertKernel;

const esft::ParamNaming kFusedNaming({{esft::Role::EXPERT_GATE_UP, "layers.{layer}.experts.gate_up_proj"},
                                      {esft::Role::EXPERT_DOWN, "layers.{layer}.experts.down_proj"},
                                      {esft::Role::EXPERT_GATE_UP_BIAS, "layers.{layer}.experts.gate_up_proj_bias"},
                                      {esft::Role::EXPERT_DOWN_BIAS, "layers.{layer}.experts.down_proj_bias"}});

ExpertBankSpec gpt_oss_like(int64_t hidden, int64_t intermediate) {
  ExpertBankSpec spec;
  spec.num_experts = 6;
  spec.hidden = hidden;
  spec.intermediate = intermediate;
  spec.bias = true;
  spec.layout = esft::nn::ExpertCheckpointLayout::FusedInterleaved;
  spec.activation = esft::nn::ExpertActivation::ClampedSwiGLU;
  return spec;
}

std::shared_ptr<ExpertBank> random_bank(const ExpertBankSpec& spec) {
  auto bank = std::make_shared<ExpertBank>(spec, 0, kFusedNaming, at::kFloat);
  at::NoGradGuard no_grad;
  for (auto& p : bank->parameters()) p.normal_(0, 0.3);
  return bank;
}

// The bank's output for each token, one token and expert at a time, from the checkpoint bindings (the
// transformers formula, independent of both kernels).
at::Tensor per_token(const ExpertBank& bank, const at::Tensor& x, const at::Tensor& idx, const at::Tensor& w) {
  const auto& spec = bank.spec();
  std::vector<at::Tensor> gate_up, down, gate_up_bias, down_bias;  // [H, 2I] interleaved, [I, H], [2I], [H]
  for (const auto& b : bank.bindings()) {
    auto& into = b.key().find("gate_up_proj_bias") != std::string::npos ? gate_up_bias
                 : b.key().find("down_proj_bias") != std::string::npos  ? down_bias
                 : b.key().find("gate_up_proj") != std::string::npos    ? gate_up
                                                                        : down;
    for (size_t e = 0; e < b.parts().size(); ++e) into.push_back(b.value()[static_cast<int64_t>(e)]);
  }
  auto out = at::zeros_like(x);
  for (int64_t n = 0; n < x.size(0); ++n) {
    for (int64_t j = 0; j < idx.size(1); ++j) {
      const int64_t e = idx[n][j].item<int64_t>();
      auto gu = at::matmul(x[n], gate_up[e]) + gate_up_bias[e];
      auto gate = gu.slice(0, 0, c10::nullopt, 2).clamp_max(spec.swiglu_limit);
      auto up = gu.slice(0, 1, c10::nullopt, 2).clamp(-spec.swiglu_limit, spec.swiglu_limit);
      auto h = (up + 1) * gate * at::sigmoid(gate * spec.swiglu_alpha);
      out[n] += w[n][j] * (at::matmul(h, down[e]) + down_bias[e]);
    }
  }
  return out;
}

struct Pass {
  at::Tensor y, dx;
  std::vector<at::Tensor> grads;  // of the bank's parameters
};

Pass run(const ExpertBank& bank, const at::Tensor& x, const at::Tensor& idx, const at::Tensor& w) {
  auto leaf = x.detach().requires_grad_(true);
  for (auto p : bank.parameters()) p.mutable_grad() = at::Tensor();
  auto y = bank.forward(leaf, idx, w);
  (y * at::cos(y)).sum().backward();
  Pass out{y.detach(), leaf.grad(), {}};
  for (const auto& p : bank.parameters()) out.grads.push_back(p.grad().defined() ? p.grad().clone() : at::Tensor());
  return out;
}

}  // namespace

TEST_CASE("expert bank: the grouped GEMM and the per-expert loop give the same outputs and gradients") {
  at::manual_seed(3);
  auto bank = random_bank(gpt_oss_like(16, 8));
  bank->set_trainable_experts({4, 1, 5});  // expert 5 gets no token below: its gradient rows must be zero
  const auto x = at::randn({10, 16});
  const auto idx = at::randint(0, 5, {10, 2}, at::kLong);
  const auto w = at::rand({10, 2});
  esft::nn::set_expert_kernel(ExpertKernel::Loop);
  const auto loop = run(*bank, x, idx, w);
  esft::nn::set_expert_kernel(ExpertKernel::Grouped);
  const auto grouped = run(*bank, x, idx, w);
  esft::nn::set_expert_kernel(ExpertKernel::Auto);

  CHECK(at::allclose(loop.y, per_token(*bank, x, idx, w), 1e-5, 1e-5));
  CHECK(at::allclose(grouped.y, loop.y, 1e-5, 1e-5));
  CHECK(at::allclose(grouped.dx, loop.dx, 1e-5, 1e-5));
  REQUIRE(grouped.grads.size() == loop.grads.size());
  for (size_t i = 0; i < loop.grads.size(); ++i) {
    REQUIRE(loop.grads[i].defined());
    CHECK(loop.grads[i].size(0) == 3);  // the trainable experts' rows only
    CHECK(at::allclose(grouped.grads[i], loop.grads[i], 1e-5, 1e-5));
    CHECK(at::equal(grouped.grads[i][2], at::zeros_like(grouped.grads[i][2])));  // expert 5: trainable, no token
  }
}

TEST_CASE("expert bank: after Module::to the halves are packed again and the outputs are unchanged") {
  at::manual_seed(4);
  auto bank = random_bank(gpt_oss_like(16, 8));
  for (const auto& t : bank->buffers()) CHECK_FALSE(t.is_view());  // a fresh bank
  bank->set_trainable_experts({2, 3});
  const auto x = at::randn({7, 16});
  const auto idx = at::randint(0, 6, {7, 2}, at::kLong);
  const auto w = at::rand({7, 2});
  at::NoGradGuard no_grad;
  // No half is an autograd view: a view would keep its base's storage alive after a re-split (a whole bank).
  for (const auto& t : bank->parameters()) CHECK_FALSE(t.is_view());
  for (const auto& t : bank->buffers()) CHECK_FALSE(t.is_view());
  // Packed since set_trainable_experts: a forward leaves the parameters where they are.
  const auto* where = bank->parameters().front().data_ptr();
  bank->forward(x, idx, w);
  CHECK(bank->parameters().front().data_ptr() == where);
  for (const auto kernel : {ExpertKernel::Loop, ExpertKernel::Grouped}) {
    esft::nn::set_expert_kernel(kernel);
    const auto before = bank->forward(x, idx, w);
    bank->to(at::kDouble);  // every parameter and buffer converted on its own: the halves part
    bank->to(at::kFloat);
    CHECK(at::equal(bank->forward(x, idx, w), before));
  }
  esft::nn::set_expert_kernel(ExpertKernel::Auto);
}

TEST_CASE("expert bank: the grouped kernel refuses sizes whose rows are not multiples of 16 bytes") {
  auto bank = random_bank(gpt_oss_like(16, 6));  // 6 float32 = 24 bytes
  esft::nn::set_expert_kernel(ExpertKernel::Grouped);
  CHECK_THROWS_WITH_AS(bank->forward(at::randn({3, 16}), at::zeros({3, 1}, at::kLong), at::ones({3, 1})),
                       doctest::Contains("multiples of 16 bytes"), esft::Error);
  esft::nn::set_expert_kernel(ExpertKernel::Auto);
  CHECK_NOTHROW(bank->forward(at::randn({3, 16}), at::zeros({3, 1}, at::kLong), at::ones({3, 1})));
}

TEST_CASE("expert bank: an ungated SiLU bank in the fused layout (tinymoe) computes fc2(silu(fc1 x)) with each kernel") {
  ExpertBankSpec spec;
  spec.num_experts = 4;
  spec.hidden = 8;
  spec.intermediate = 12;
  spec.bias = true;
  spec.layout = esft::nn::ExpertCheckpointLayout::Fused;
  spec.activation = esft::nn::ExpertActivation::PlainSiLU;
  CHECK(spec.first_width() == 12);
  at::manual_seed(6);
  auto bank = random_bank(spec);
  bank->set_trainable_experts({3, 0});
  const auto bindings = bank->bindings();
  REQUIRE(bindings.size() == 4);
  CHECK(bindings[0].key() == "layers.0.experts.gate_up_proj");
  CHECK(bindings[0].value().sizes() == at::IntArrayRef{4, 12, 8});  // [E, I, H], as in memory
  CHECK(bindings[1].value().sizes() == at::IntArrayRef{4, 8, 12});
  const auto w1 = bindings[0].value(), w2 = bindings[1].value(), b1 = bindings[2].value(), b2 = bindings[3].value();
  const auto x = at::randn({9, 8});
  const auto idx = at::randint(0, 4, {9, 1}, at::kLong);
  const auto w = at::rand({9, 1});
  auto expected = at::zeros_like(x);
  for (int64_t n = 0; n < 9; ++n) {
    const int64_t e = idx[n][0].item<int64_t>();
    expected[n] = w[n][0] * (at::matmul(w2[e], at::silu(at::matmul(w1[e], x[n]) + b1[e])) + b2[e]);
  }
  for (const auto kernel : {ExpertKernel::Loop, ExpertKernel::Grouped}) {
    esft::nn::set_expert_kernel(kernel);
    const auto pass = run(*bank, x, idx, w);
    CHECK(at::allclose(pass.y, expected, 1e-5, 1e-5));
    CHECK(pass.grads[0].sizes() == at::IntArrayRef{2, 12, 8});  // the two trainable experts' rows
  }
  esft::nn::set_expert_kernel(ExpertKernel::Auto);
}

TEST_CASE("expert bank: the interleaved layout refuses an ungated activation") {
  auto spec = gpt_oss_like(16, 8);
  spec.activation = esft::nn::ExpertActivation::PlainSiLU;
  CHECK_THROWS_WITH_AS(ExpertBank(spec, 0, kFusedNaming, at::kFloat), doctest::Contains("needs a gated activation"),
                       esft::Error);
}
