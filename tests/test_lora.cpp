// LoRA (nn/lora.h, pipeline/lora_adapter.h) on the tiny fixture models: the pairs' gradients against autograd
// through W + scaling·BA on the plain model, folding against the attached forward, PEFT's files written and read
// back, and the targets and settings it refuses.
#include <ATen/ATen.h>
#include "doctest_torch.h"

#include <map>

#include "esft/error.h"
#include "esft/model/losses.h"
#include "esft/nn/expert_bank.h"
#include "esft/nn/linear.h"
#include "esft/nn/router.h"
#include "esft/pipeline/lora_adapter.h"
#include "esft/pipeline/trainable.h"
#include "test_support.h"
#include "tiny_models.h"

namespace {

namespace fs = std::filesystem;
using esft::pipeline::LoraConfig;
using esft::pipeline::LoraTarget;
using test_support::max_diff;
using test_support::TempDir;
using namespace tiny_models;

template <typename T>
T& module_named(esft::MoECausalLM& model, const std::string& name) {
  for (const auto& item : model.named_modules("", false))
    if (item.key() == name) return dynamic_cast<T&>(*item.value());
  throw esft::Error("no module " + name);
}

LoraConfig every_kind(int64_t rank) {
  LoraConfig c;
  c.spec.rank = rank;
  c.spec.alpha = 3 * rank;  // scaling 3, not 1: a missing scaling factor shows
  c.targets = {"all-linear", "gate", "experts"};
  return c;
}

// Every B drawn at random: a fresh pair has B = 0, under which half the gradients vanish and a wrong layout hides.
void randomise_b(esft::MoECausalLM& model) {
  at::NoGradGuard no_grad;
  for (auto& p : model.named_parameters()) {
    if (p.key().find("lora_B") != std::string::npos) p.value().normal_(0, 0.2);
  }
}

at::Tensor loss_of(esft::MoECausalLM& model, const at::Tensor& ids) {
  const auto out = model.forward(ids, at::Tensor(), {});
  return esft::causal_lm_loss(out.logits, ids);
}

// A bank pair's per-expert factors: A_e [r, in] and B_e [out, r] (PEFT's 3-D layout, nn/lora.h).
at::Tensor expert_a(const esft::nn::LoraPair& p) { return p.A().view({p.experts(), p.spec().rank, -1}); }
at::Tensor expert_b(const esft::nn::LoraPair& p) { return p.B().view({p.B().size(0), p.spec().rank, p.experts()}).permute({2, 0, 1}); }

}  // namespace

TEST_CASE("lora: every pair's gradient equals autograd through W + scaling BA on the plain model") {
  for (const auto* fixture : {"qwen3_moe", "qwen2_moe"}) {
    CAPTURE(fixture);
    auto adapted = load_tiny(fixture, fixture);
    at::manual_seed(3);
    const auto targets = esft::pipeline::attach_lora(*adapted.model, every_kind(2));
    randomise_b(*adapted.model);
    const auto ids = at::randint(0, adapted.config.vocab_size, {2, 12}, at::kLong);
    loss_of(*adapted.model, ids).backward();

    // The plain model (every expert trainable, no pairs) with each adapted weight set to W + delta.
    auto plain = load_tiny(fixture, fixture);
    {
      at::NoGradGuard no_grad;
      for (const auto& t : targets) {
        switch (t.kind) {
          case LoraTarget::Kind::Linear:
            module_named<esft::nn::Linear>(*plain.model, t.module).weight.add_(module_named<esft::nn::Linear>(*adapted.model, t.module).lora->delta());
            break;
          case LoraTarget::Kind::Router:
            module_named<esft::nn::Router>(*plain.model, t.module).weight.add_(module_named<esft::nn::Router>(*adapted.model, t.module).lora->delta());
            break;
          case LoraTarget::Kind::ExpertGateUp:
          case LoraTarget::Kind::ExpertDown: {
            const bool g = t.kind == LoraTarget::Kind::ExpertGateUp;
            auto& bank = module_named<esft::nn::ExpertBank>(*adapted.model, t.module);
            auto params = module_named<esft::nn::ExpertBank>(*plain.model, t.module).named_parameters(false);
            params[g ? "gate_up" : "down"].add_((g ? bank.gate_up_lora : bank.down_lora)->delta());
            break;
          }
        }
      }
    }
    loss_of(*plain.model, ids).backward();

    // Chain rule: with G = dL/dW and delta = s B A, dL/dB = s G A^T and dL/dA = s B^T G (per expert for banks).
    const double s = every_kind(2).spec.scaling();
    int checked = 0;
    for (const auto& t : targets) {
      CAPTURE(t.module);
      at::Tensor G;
      const esft::nn::LoraPair* pair = nullptr;
      switch (t.kind) {
        case LoraTarget::Kind::Linear:
          G = module_named<esft::nn::Linear>(*plain.model, t.module).weight.grad();
          pair = module_named<esft::nn::Linear>(*adapted.model, t.module).lora.get();
          break;
        case LoraTarget::Kind::Router:
          G = module_named<esft::nn::Router>(*plain.model, t.module).weight.grad();
          pair = module_named<esft::nn::Router>(*adapted.model, t.module).lora.get();
          break;
        case LoraTarget::Kind::ExpertGateUp:
        case LoraTarget::Kind::ExpertDown: {
          const bool g = t.kind == LoraTarget::Kind::ExpertGateUp;
          G = module_named<esft::nn::ExpertBank>(*plain.model, t.module).named_parameters(false)[g ? "gate_up" : "down"].grad();
          auto& bank = module_named<esft::nn::ExpertBank>(*adapted.model, t.module);
          pair = (g ? bank.gate_up_lora : bank.down_lora).get();
          break;
        }
      }
      REQUIRE(G.defined());
      REQUIRE(pair->A().grad().defined());
      if (pair->experts() == 1) {
        CHECK(max_diff(pair->B().grad(), s * at::mm(G, pair->A().t())) < 2e-6);
        CHECK(max_diff(pair->A().grad(), s * at::mm(pair->B().t(), G)) < 2e-6);
      } else {
        const auto a = expert_a(*pair), b = expert_b(*pair);
        const auto gb = (s * at::bmm(G, a.transpose(1, 2))).permute({1, 2, 0}).reshape_as(pair->B());
        const auto ga = (s * at::bmm(b.transpose(1, 2), G)).reshape_as(pair->A());
        CHECK(max_diff(pair->B().grad(), gb) < 2e-6);
        CHECK(max_diff(pair->A().grad(), ga) < 2e-6);
      }
      CHECK(pair->B().grad().abs().max().item<double>() > 0);
      ++checked;
    }
    CHECK(checked == static_cast<int>(targets.size()));
    // Nothing but the pairs has a gradient.
    for (const auto& p : adapted.model->named_parameters()) {
      if (p.key().find(".lora") == std::string::npos) CHECK_MESSAGE(!p.value().grad().defined(), p.key());
    }
  }
}

TEST_CASE("lora: folding the pairs, and PEFT's files read into a fresh model, give the attached forward's logits") {
  TempDir dir;
  auto adapted = load_tiny("qwen3_moe", "qwen3_moe");
  at::manual_seed(5);
  const auto config = every_kind(4);
  const auto targets = esft::pipeline::attach_lora(*adapted.model, config);
  randomise_b(*adapted.model);
  adapted.model->eval();
  const auto ids = at::randint(0, adapted.config.vocab_size, {2, 10}, at::kLong);
  at::Tensor attached;
  {
    at::NoGradGuard no_grad;
    attached = adapted.model->forward(ids, at::Tensor(), {}).logits;
  }
  const auto base = load_tiny("qwen3_moe", "qwen3_moe");
  at::Tensor base_logits;
  {
    at::NoGradGuard no_grad;
    base_logits = base.model->forward(ids, at::Tensor(), {}).logits;
  }
  CHECK(max_diff(attached, base_logits) > 0.05);  // the pairs matter here

  esft::pipeline::save_peft_lora_adapter(*adapted.model, targets, config, dir.path / "adapter", "tiny");
  for (const char* file : {"adapter_config.json", "adapter_model.safetensors", "esft_lora.json"}) CHECK(fs::exists(dir.path / "adapter" / file));
  const auto read = esft::pipeline::PeftLoraAdapter::open(dir.path / "adapter");
  CHECK(read.tensors.size() == 2 * targets.size());
  CHECK(read.lora.spec.rank == 4);

  esft::pipeline::fold_attached_lora(*adapted.model);
  for (const auto& p : adapted.model->named_parameters()) CHECK_MESSAGE(p.key().find(".lora") == std::string::npos, p.key());
  auto fresh = load_tiny("qwen3_moe", "qwen3_moe");
  CHECK(esft::pipeline::fold_peft_lora_adapter(*fresh.model, read) == static_cast<int64_t>(targets.size()));
  at::NoGradGuard no_grad;
  CHECK(max_diff(adapted.model->forward(ids, at::Tensor(), {}).logits, attached) < 2e-5);
  CHECK(max_diff(fresh.model->forward(ids, at::Tensor(), {}).logits, attached) < 2e-5);
}

TEST_CASE("lora: PEFT's key names, nested for a bank with both tensors adapted") {
  auto t = load_tiny("qwen3_moe", "qwen3_moe");
  LoraConfig c;
  c.spec.rank = 2;
  c.targets = {"q_proj", "layers.0.mlp.experts", "layers.1.mlp.experts.down_proj", "gate"};
  const auto targets = esft::pipeline::attach_lora(*t.model, c);
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& [name, tensor] : esft::pipeline::peft_lora_tensors(*t.model, targets)) shapes[name] = tensor.sizes().vec();
  const std::string p = "base_model.model.model.layers.";
  CHECK(shapes.at(p + "0.self_attn.q_proj.lora_A.weight") == std::vector<int64_t>{2, 64});
  CHECK(shapes.at(p + "0.self_attn.q_proj.lora_B.weight") == std::vector<int64_t>{96, 2});
  CHECK(shapes.at(p + "0.mlp.experts.base_layer.lora_A.weight") == std::vector<int64_t>{16, 64});  // gate_up: r·E x H
  CHECK(shapes.at(p + "0.mlp.experts.base_layer.lora_B.weight") == std::vector<int64_t>{64, 16});  // 2I x r·E
  CHECK(shapes.at(p + "0.mlp.experts.lora_A.weight") == std::vector<int64_t>{16, 32});             // down: r·E x I
  CHECK(shapes.at(p + "1.mlp.experts.lora_A.weight") == std::vector<int64_t>{16, 32});             // down alone: no nesting
  CHECK(shapes.count(p + "1.mlp.experts.base_layer.lora_A.weight") == 0);
  CHECK(shapes.count(p + "2.mlp.experts.lora_A.weight") == 0);
  CHECK(shapes.at(p + "2.mlp.gate.lora_B.weight") == std::vector<int64_t>{8, 2});
  CHECK(shapes.size() == 2 * (3 + 2 + 1 + 3));
}

TEST_CASE("lora: targets that match nothing, ranks beyond a target, dropout on experts and gpt-oss experts are refused") {
  auto check_refused = [](const std::string& fixture, LoraConfig c, const std::string& needle) {
    auto t = load_tiny(fixture, fixture);
    const auto message = test_support::error_of([&] { esft::pipeline::attach_lora(*t.model, c); });
    CAPTURE(message);
    CHECK(message.find(needle) != std::string::npos);
  };
  LoraConfig c;
  c.targets = {"q_proj", "qproj"};
  check_refused("qwen3_moe", c, "LoRA target 'qproj' matches no linear layer");
  c.targets = {"k_proj"};
  c.spec.rank = 49;  // k_proj is 48 x 64
  check_refused("qwen3_moe", c, "exceeds the target's dimensions 48 x 64");
  c.spec.rank = 0;
  check_refused("qwen3_moe", c, "rank 0 must be at least 1");
  c.spec.rank = 2;
  c.spec.dropout = 0.1;
  c.targets = {"experts"};
  check_refused("qwen3_moe", c, "takes no dropout");
  c.spec.dropout = 0;
  check_refused("gpt_oss", c, "LoRA on gpt-oss' routed experts is not built");
  c.targets = {"lm_head"};  // the logits read its weight directly: a pair there would never train
  check_refused("qwen3_moe", c, "LoRA on lm_head is not built");
}

TEST_CASE("full: with every expert trainable the gradients equal those of the freshly loaded (unsplit) model") {
  auto plain = load_tiny("qwen2_moe", "qwen2_moe");
  auto full = load_tiny("qwen2_moe", "qwen2_moe");
  // What train --method full applies.
  esft::pipeline::apply_expert_config(*full.model, full.family->naming(), esft::pipeline::everything_config(*full.model));
  at::manual_seed(9);
  const auto ids = at::randint(0, plain.config.vocab_size, {2, 12}, at::kLong);
  loss_of(*plain.model, ids).backward();
  loss_of(*full.model, ids).backward();
  std::map<std::string, at::Tensor> grads;
  for (const auto& p : plain.model->named_parameters()) grads[p.key()] = p.value().grad();
  int compared = 0;
  for (const auto& p : full.model->named_parameters()) {
    CAPTURE(p.key());
    REQUIRE(p.value().grad().defined());
    if (p.value().numel() == 0) continue;
    REQUIRE(grads.count(p.key()));
    // A bank re-split under another expert order holds its rows in that order: compare through the bindings below.
    if (p.key().find(".experts.") != std::string::npos) continue;
    CHECK(max_diff(p.value().grad(), grads[p.key()]) < 1e-6);
    ++compared;
  }
  CHECK(compared > 10);
  // The experts' gradients by checkpoint name, whatever the bank's row order.
  std::map<std::string, at::Tensor> plain_expert, full_expert;
  for (auto* layer : plain.model->moe_layers()) {
    auto g = layer->experts().named_parameters(false)["gate_up"].grad();
    for (int64_t e = 0; e < g.size(0); ++e) plain_expert[std::to_string(layer->layer_index()) + ":" + std::to_string(e)] = g[e];
  }
  for (auto* layer : full.model->moe_layers()) {
    auto& bank = layer->experts();
    const auto order = bank.trainable_experts();  // bank position -> expert id
    auto g = bank.named_parameters(false)["gate_up"].grad();
    for (size_t p = 0; p < order.size(); ++p) full_expert[std::to_string(layer->layer_index()) + ":" + std::to_string(order[p])] = g[static_cast<int64_t>(p)];
  }
  REQUIRE(plain_expert.size() == full_expert.size());
  for (const auto& [key, g] : plain_expert) CHECK(max_diff(full_expert.at(key), g) < 1e-6);
}
