// Expert parallelism in one process: three ranks as threads over Gloo, each holding two of a layer's six experts,
// against one bank holding them all: every rank's output and input gradient, and the trainable experts' gradients
// (which collect every rank's tokens on their owner); and the collectives it rests on.
#include <ATen/ATen.h>
#include "doctest_torch.h"

#include <map>
#include <string>
#include <vector>

#include "esft/dist/collectives.h"
#include "esft/error.h"
#include "esft/nn/expert_bank.h"
#include "esft/nn/expert_parallel.h"
#include "esft/nn/moe_layer.h"
#include "gloo_ranks.h"

namespace {

using esft::nn::ExpertBank;
using esft::nn::ExpertBankSpec;

const esft::ParamNaming kPerExpertNaming({{esft::Role::EXPERT_GATE, "layers.{layer}.experts.{expert}.gate_proj.weight"},
                                          {esft::Role::EXPERT_UP, "layers.{layer}.experts.{expert}.up_proj.weight"},
                                          {esft::Role::EXPERT_DOWN, "layers.{layer}.experts.{expert}.down_proj.weight"}});

ExpertBankSpec small_spec() {
  ExpertBankSpec spec;
  spec.num_experts = 6;
  spec.hidden = 8;
  spec.intermediate = 4;
  return spec;
}

// Values that depend on nothing but their place (the ranks are threads: no shared random generator).
at::Tensor pattern(std::vector<int64_t> sizes, double phase) {
  const int64_t n = c10::multiply_integers(sizes.begin(), sizes.end());
  return (at::sin(at::arange(n, at::kDouble) * 0.731 + phase) * 0.4).to(at::kFloat).view(sizes);
}

// The one-process bank with every checkpoint tensor set from its name's place in the list.
std::shared_ptr<ExpertBank> whole_bank(const std::vector<int64_t>& trainable) {
  auto bank = std::make_shared<ExpertBank>(small_spec(), 0, kPerExpertNaming, at::kFloat);
  bank->set_trainable_experts(trainable);
  double phase = 0;
  for (const auto& b : bank->bindings()) b.assign(pattern(b.shape(), phase += 1.3));
  return bank;
}

// Rank r's tokens: 3 + r of them, each routed to two experts with weights.
struct Tokens {
  at::Tensor x, idx, weight;
};
Tokens tokens_of(int rank) {
  const int64_t n = 3 + rank;
  Tokens t;
  t.x = pattern({n, 8}, 10.0 + rank).requires_grad_();
  t.idx = (at::arange(2 * n, at::kLong).view({n, 2}) * (rank + 2) + at::tensor({0, 3}, at::kLong)) % 6;
  t.weight = pattern({n, 2}, 20.0 + rank).abs();
  return t;
}
at::Tensor output_weights(int rank, int64_t n) { return pattern({n, 8}, 30.0 + rank); }

}  // namespace

TEST_CASE("expert parallelism: three ranks of two experts each give the one-process outputs and gradients") {
  const int world = 3;
  const std::vector<int64_t> trainable = {0, 1, 5};  // rank 0 trains two, rank 1 none, rank 2 one
  std::vector<at::Tensor> outputs(world), input_grads(world), gate_up_grads(world), down_grads(world);
  std::vector<int64_t> held(world), first(world);
  std::vector<std::vector<int64_t>> rows(world);
  const auto failures = esft::test::run_gloo_ranks(world, [&](int rank, esft::dist::Communicator& group) {
    std::shared_ptr<ExpertBank> bank;
    {
      esft::nn::ExpertParallelScope scope(&group);
      bank = std::make_shared<ExpertBank>(small_spec(), 0, kPerExpertNaming, at::kFloat);
    }
    bank->set_trainable_experts(trainable);
    // This rank's experts from the whole bank, through the checkpoint names (as loading does).
    const auto whole = whole_bank(trainable);
    std::map<std::string, at::Tensor> stored;
    for (const auto& b : whole->bindings()) stored[b.key()] = b.value();
    for (const auto& b : bank->bindings()) b.assign(stored.at(b.key()));
    const auto r = static_cast<size_t>(rank);
    held[r] = bank->held_experts();
    first[r] = bank->first_expert();
    rows[r] = bank->trainable_rows_per_rank();

    auto t = tokens_of(rank);
    const auto y = bank->forward(t.x, t.idx, t.weight);
    (y * output_weights(rank, t.x.size(0))).sum().backward();
    outputs[r] = y.detach();
    input_grads[r] = t.x.grad();
    // The trainable experts' gradients, whole, as a checkpoint gathers them.
    const auto params = bank->named_parameters(false);
    gate_up_grads[r] = esft::dist::all_gather_rows(group, params["gate_up"].grad(), rows[r]);
    down_grads[r] = esft::dist::all_gather_rows(group, params["down"].grad(), rows[r]);
  });
  for (int rank = 0; rank < world; ++rank) {
    CAPTURE(rank);
    REQUIRE(failures[static_cast<size_t>(rank)] == "");
  }

  // One process: one bank, every rank's tokens, one loss.
  const auto whole = whole_bank(trainable);
  at::Tensor loss = at::zeros({}, at::kFloat);
  std::vector<Tokens> all;
  for (int rank = 0; rank < world; ++rank) {
    all.push_back(tokens_of(rank));
    const auto y = whole->forward(all.back().x, all.back().idx, all.back().weight);
    const auto r = static_cast<size_t>(rank);
    CAPTURE(rank);
    CHECK(held[r] == 2);
    CHECK(first[r] == 2 * rank);
    CHECK(rows[r] == std::vector<int64_t>{2, 0, 1});
    CHECK(at::allclose(outputs[r], y.detach(), 1e-5, 1e-6));
    loss = loss + (y * output_weights(rank, y.size(0))).sum();
  }
  loss.backward();
  const auto params = whole->named_parameters(false);
  for (int rank = 0; rank < world; ++rank) {
    const auto r = static_cast<size_t>(rank);
    CAPTURE(rank);
    CHECK(at::allclose(input_grads[r], all[r].x.grad(), 1e-5, 1e-6));
    CHECK(at::allclose(gate_up_grads[r], params["gate_up"].grad(), 1e-5, 1e-6));
    CHECK(at::allclose(down_grads[r], params["down"].grad(), 1e-5, 1e-6));
  }
}

TEST_CASE("expert parallelism: a rank whose every slot chose a trash can still takes part in the exchanges") {
  // Select-MoE: 4 experts and 2 trash cans, 2 experts per rank. The trash cans' router rows favour positive inputs:
  // rank 0's tokens (positive) all go to trash cans, rank 1's (negative) to experts on both ranks.
  esft::nn::MoESpec spec;
  spec.router.num_experts = 6;
  spec.router.top_k = 2;
  spec.experts.intermediate = 8;
  spec.trash_experts = 2;
  const auto naming = esft::hf_moe_decoder_naming();
  auto fill = [](esft::nn::MoELayer& layer) {
    at::NoGradGuard no_grad;
    double phase = 0;
    for (const auto& b : layer.experts().bindings()) b.assign(pattern(b.shape(), phase += 1.3));
    auto router = layer.named_parameters()["gate.weight"];
    router.narrow(0, 0, 4).copy_(pattern({4, 16}, 7.0));
    router.narrow(0, 4, 2).fill_(10.0);
  };
  auto input = [](int rank) { return (pattern({2, 3, 16}, 40.0 + rank).abs() + 0.1) * (rank == 0 ? 1 : -1); };
  std::vector<at::Tensor> outputs(2);
  const auto failures = esft::test::run_gloo_ranks(2, [&](int rank, esft::dist::Communicator& group) {
    std::shared_ptr<esft::nn::MoELayer> layer;
    {
      esft::nn::ExpertParallelScope scope(&group);
      layer = std::make_shared<esft::nn::MoELayer>(spec, 16, 0, naming, at::kFloat);
    }
    // This rank's experts, from a layer holding all four.
    esft::nn::MoELayer whole(spec, 16, 0, naming, at::kFloat);
    fill(whole);
    std::map<std::string, at::Tensor> stored;
    for (const auto& b : whole.experts().bindings()) stored[b.key()] = b.value();
    at::NoGradGuard no_grad;
    for (const auto& b : layer->experts().bindings()) b.assign(stored.at(b.key()));
    layer->named_parameters()["gate.weight"].copy_(whole.named_parameters()["gate.weight"]);
    outputs[static_cast<size_t>(rank)] = layer->forward(input(rank), {});
  });
  for (const auto& f : failures) REQUIRE(f == "");
  esft::nn::MoELayer whole(spec, 16, 0, naming, at::kFloat);
  fill(whole);
  at::NoGradGuard no_grad;
  CHECK(at::equal(outputs[0], at::zeros({2, 3, 16})));
  const auto expected = whole.forward(input(1), {});
  CHECK(expected.abs().sum().item<double>() > 0);
  CHECK(at::allclose(outputs[1], expected, 1e-5, 1e-6));
}

TEST_CASE("expert parallelism: a bank refuses experts that do not divide over the ranks, and fused layouts") {
  const auto failures = esft::test::run_gloo_ranks(4, [&](int, esft::dist::Communicator& group) {
    esft::nn::ExpertParallelScope scope(&group);
    ExpertBank(small_spec(), 3, kPerExpertNaming, at::kFloat);  // 6 experts over 4 ranks
  });
  for (const auto& f : failures) CHECK(f.find("needs a number of experts per layer that they divide evenly (layer 3 has 6)") != std::string::npos);
}

TEST_CASE("expert parallelism: checkpoint keys of other ranks' experts are skipped, its own are bound") {
  const auto failures = esft::test::run_gloo_ranks(2, [&](int rank, esft::dist::Communicator& group) {
    esft::nn::ExpertParallelScope scope(&group);
    ExpertBank bank(small_spec(), 1, kPerExpertNaming, at::kFloat);
    std::vector<std::string> bound;
    for (const auto& b : bank.bindings()) bound.push_back(b.key());
    const int64_t mine = rank == 0 ? 0 : 3, theirs = rank == 0 ? 3 : 0;
    const auto key = [](int64_t e) { return "layers.1.experts." + std::to_string(e) + ".up_proj.weight"; };
    if (bound.size() != 9 || std::find(bound.begin(), bound.end(), key(mine)) == bound.end()) throw esft::Error("bindings");
    if (!bank.held_elsewhere(key(theirs)) || bank.held_elsewhere(key(mine))) throw esft::Error("held_elsewhere");
  });
  for (const auto& f : failures) CHECK(f == "");
}

TEST_CASE("expert parallelism: rank 0 gathers every rank's named tensors, replicated ones once") {
  std::vector<std::vector<std::pair<std::string, at::Tensor>>> gathered(3);
  const auto failures = esft::test::run_gloo_ranks(3, [&](int rank, esft::dist::Communicator& group) {
    std::vector<std::pair<std::string, at::Tensor>> mine = {{"shared", at::ones({2})}};
    for (int i = 0; i < rank; ++i)  // rank r holds r tensors of its own, of r rows, in bfloat16 on rank 2
      mine.emplace_back("r" + std::to_string(rank) + "." + std::to_string(i),
                        at::full({rank, 3}, rank * 10 + i, rank == 2 ? at::kBFloat16 : at::kFloat));
    gathered[static_cast<size_t>(rank)] = esft::dist::gather_named_tensors(group, mine);
  });
  for (const auto& f : failures) REQUIRE(f == "");
  CHECK(gathered[1].empty());
  CHECK(gathered[2].empty());
  const auto& g = gathered[0];
  REQUIRE(g.size() == 4);
  CHECK(g[0].first == "shared");
  CHECK(g[1].first == "r1.0");
  CHECK(at::equal(g[1].second, at::full({1, 3}, 10.0f)));
  CHECK(g[3].first == "r2.1");
  CHECK((g[3].second.scalar_type() == at::kBFloat16));
  CHECK(at::equal(g[3].second, at::full({2, 3}, 21, at::kBFloat16)));
}
