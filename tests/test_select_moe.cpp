// Select-MoE (shared/spec/VARIANTS.md §1): trash-can experts in the shared MoE layer, the conversion of an OLMoE
// checkpoint, the trash-mass constraint, and routing statistics that count no trash can as an expert.
#include <ATen/ATen.h>
#include "doctest_torch.h"

#include <cmath>

#include "esft/error.h"
#include "esft/io/json_file.h"
#include "esft/io/safetensors.h"
#include "esft/io/weights.h"
#include "esft/model/model_config.h"
#include "esft/model/trash_constraint.h"
#include "esft/nn/moe_layer.h"
#include "esft/pipeline/data_selection.h"
#include "esft/pipeline/routing_collector.h"
#include "esft/pipeline/trash_conversion.h"
#include "esft/train/router_objective.h"
#include "esft/train/train_options.h"
#include "plugin_loader.h"
#include "test_support.h"

namespace {

const std::filesystem::path kOlmoe = std::filesystem::path(ESFT_TEST_DATA_DIR) / "hf" / "olmoe" / "model";

esft::nn::MoESpec moe_spec(int64_t columns, int64_t trash) {
  esft::nn::MoESpec s;
  s.router.num_experts = columns;
  s.router.top_k = 2;
  s.experts.intermediate = 8;
  s.trash_experts = trash;
  return s;
}

struct Recorder : esft::RouterHook {
  std::vector<esft::RouterEvent> events;
  void on_route(const esft::RouterEvent& e) override { events.push_back(e); }
};

// The OLMoE fixture converted with the default settings, loaded on the CPU in float32.
struct ConvertedOlmoe {
  std::shared_ptr<esft::ModelFamily> family;
  esft::pipeline::TrashConversion conversion;
  esft::ModelConfig config;
  std::shared_ptr<esft::MoECausalLM> model;
};
ConvertedOlmoe converted_olmoe() {
  static esft::host::PluginLoader loader(std::vector<std::filesystem::path>{ESFT_BIN_DIR});
  ConvertedOlmoe c{loader.load("olmoe_select"), {}, {}, nullptr};
  const auto checkpoint = esft::Checkpoint::open(kOlmoe);
  c.conversion = esft::pipeline::convert_to_select_moe(checkpoint, esft::read_json_file(kOlmoe / "config.json"),
                                                       c.family->naming(), {});
  test_support::TempDir dir;
  esft::save_safetensors(dir / "model.safetensors", c.conversion.tensors);
  c.conversion.tensors.clear();  // they alias the checkpoint's mapping, closed on return
  c.config = esft::ModelConfig::from_json(c.conversion.config, "converted");
  c.model = c.family->create(c.config, at::kCPU, at::kFloat);
  esft::load_checkpoint(*c.model, esft::Checkpoint::open(dir.path), "converted");
  return c;
}

}  // namespace

TEST_CASE("select moe: with trash logits far below the rest, the layer equals the layer without trash cans") {
  const auto naming = esft::hf_moe_decoder_naming();
  const auto options = at::TensorOptions().dtype(at::kFloat);
  at::manual_seed(2);
  esft::nn::MoELayer base(moe_spec(4, 0), 16, 0, naming, options), select(moe_spec(6, 2), 16, 0, naming, options);
  CHECK(select.num_experts() == 4);
  CHECK(select.trash_experts() == 2);
  at::NoGradGuard no_grad;
  auto mine = select.named_parameters();
  for (const auto& p : base.named_parameters()) {
    auto& q = mine[p.key()];
    if (q.size(0) != p.value().size(0)) {  // the router: 4 expert rows, then 2 trash rows of -10 (inputs > 0 below)
      q.narrow(0, 0, 4).copy_(p.value());
      q.narrow(0, 4, 2).fill_(-10.0);
    } else {
      q.copy_(p.value());
    }
  }
  const auto x = at::rand({3, 5, 16}) + 0.1;
  CHECK(at::equal(select.forward(x, {}), base.forward(x, {})));

  // Trash rows that win: a slot on a trash can adds nothing, a slot on an expert its weighted output.
  mine["gate.weight"].narrow(0, 4, 2).fill_(10.0);
  const auto flat = x.reshape({-1, 16});
  const auto r = select.router().route(flat, {});
  CHECK(r.idx.ge(4).all().item<bool>());  // both slots on trash cans: every token gets 0
  CHECK(at::equal(select.forward(x, {}), at::zeros_like(x)));
  mine["gate.weight"].narrow(0, 5, 1).fill_(-10.0);  // one trash can and one expert per token
  const auto mixed = select.router().route(flat, {});
  const auto on_expert = mixed.idx.lt(4);
  CHECK(on_expert.sum(1).eq(1).all().item<bool>());
  const auto expected = select.experts().forward(flat, mixed.idx.clamp_max(3), mixed.weight * on_expert);
  CHECK(at::allclose(select.forward(x, {}).reshape({-1, 16}), expected, 1e-6, 1e-6));
}

TEST_CASE("select moe: a layer with as many trash cans as router columns is refused") {
  const auto naming = esft::hf_moe_decoder_naming();
  CHECK_THROWS_WITH_AS(esft::nn::MoELayer(moe_spec(4, 4), 16, 3, naming, at::TensorOptions()),
                       doctest::Contains("leave no expert"), esft::Error);
}

TEST_CASE("select moe: the trash mass and its Beta NLL against hand computations") {
  // 2 tokens, 3 experts + 1 trash can, top-2.
  const auto probs = at::tensor({0.5f, 0.2f, 0.1f, 0.2f, 0.1f, 0.1f, 0.1f, 0.7f}).reshape({2, 4});
  const auto idx = at::tensor({0, 3, 3, 0}, at::kLong).reshape({2, 2});
  const auto weight = at::tensor({0.5f, 0.2f, 0.7f, 0.1f}).reshape({2, 2});
  const auto full = esft::trash_mass(probs, idx, weight, 1, esft::TrashRatio::Full);
  CHECK(full[0].item<float>() == doctest::Approx(0.2));
  CHECK(full[1].item<float>() == doctest::Approx(0.7));
  const auto topk = esft::trash_mass(probs, idx, weight, 1, esft::TrashRatio::TopK);
  CHECK(topk[0].item<float>() == doctest::Approx(0.2 / 0.7));
  CHECK(topk[1].item<float>() == doctest::Approx(0.7 / 0.8));

  esft::RouterEvent e;
  e.layer = 0;
  e.probs = probs;
  e.topk_idx = idx;
  e.topk_weight = weight;
  e.trash_experts = 1;
  esft::TrashConstraint c;  // alpha 1, beta 5: L = -4 log(1 - r)
  const double expected = (-4 * std::log(0.8) - 4 * std::log(0.3)) / 2;
  CHECK(esft::trash_constraint_loss(e, c).item<float>() == doctest::Approx(expected));
  c.alpha = 2;  // -(log r) joins in
  CHECK(esft::trash_constraint_loss(e, c).item<float>() ==
        doctest::Approx(expected + (-std::log(0.2) - std::log(0.7)) / 2));
  e.token_mask = at::tensor({1, 0}, at::kLong).to(at::kBool);  // padding does not count
  c.alpha = 1;
  CHECK(esft::trash_constraint_loss(e, c).item<float>() == doctest::Approx(-4 * std::log(0.8)));

  // The hook averages over layers; layers without trash cans add nothing.
  esft::TrashConstraintHook hook(c);
  hook.on_route(e);
  auto other = e;
  other.layer = 1;
  other.token_mask = at::Tensor();
  hook.on_route(other);
  auto plain = e;
  plain.trash_experts = 0;
  hook.on_route(plain);
  CHECK(hook.take_loss().item<float>() == doctest::Approx((-4 * std::log(0.8) + expected) / 2));
  CHECK_FALSE(hook.take_loss().defined());
}

TEST_CASE("select moe: routing statistics count no trash can as an expert") {
  esft::pipeline::RoutingCollector collector("select_moe", 3, 2);
  esft::RouterEvent e;
  e.layer = 0;
  e.topk_idx = at::tensor({0, 3, 3, 1}, at::kLong).reshape({2, 2});
  e.topk_weight = at::tensor({0.5f, 0.2f, 0.7f, 0.1f}).reshape({2, 2});
  e.router_logits = at::zeros({2, 4});
  e.trash_experts = 1;
  collector.on_route(e);
  const auto stats = collector.stats();
  const auto& layer = stats.layers.at(0);
  CHECK(layer.tokens == 2);
  CHECK(layer.token_count == std::vector<int64_t>{1, 1, 0});
  CHECK(layer.gate_sum[0] == doctest::Approx(0.5));
  CHECK(layer.gate_sum[1] == doctest::Approx(0.1));
}

TEST_CASE("select moe: conversion grows every router by seeded rows and copies every other tensor bit for bit") {
  const auto checkpoint = esft::Checkpoint::open(kOlmoe);
  const auto config = esft::read_json_file(kOlmoe / "config.json");
  const auto& naming = esft::hf_moe_decoder_naming();
  esft::pipeline::TrashConversionOptions o;
  o.seed = 7;
  const auto a = esft::pipeline::convert_to_select_moe(checkpoint, config, naming, o);
  const auto b = esft::pipeline::convert_to_select_moe(checkpoint, config, naming, o);
  const int64_t E = config["num_experts"], k = config["num_experts_per_tok"];
  CHECK(a.trash_experts == k);
  CHECK(a.routers_grown == config["num_hidden_layers"].get<int>());
  CHECK(a.config["model_type"] == "select_moe");
  CHECK(a.config["num_trash_experts"] == k);
  CHECK(a.config["constraint_beta"] == 5.0);
  REQUIRE(a.tensors.size() == checkpoint.keys().size());
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    const auto& key = a.tensors[i].first;
    const auto& t = a.tensors[i].second;
    CAPTURE(key);
    const auto original = checkpoint.load(key);
    if (key.find("mlp.gate.weight") != std::string::npos) {
      REQUIRE(t.size(0) == E + k);
      CHECK(at::equal(t.narrow(0, 0, E), original));
      const auto rows = t.narrow(0, E, k).to(at::kFloat);
      CHECK(rows.std().item<double>() == doctest::Approx(0.02).epsilon(0.2));
      CHECK(at::equal(t, b.tensors[i].second));  // the seed decides
    } else {
      CHECK(at::equal(t, original));
    }
  }
  o.seed = 8;
  const auto c = esft::pipeline::convert_to_select_moe(checkpoint, config, naming, o);
  bool differs = false;
  for (size_t i = 0; i < a.tensors.size(); ++i) differs = differs || !at::equal(c.tensors[i].second, a.tensors[i].second);
  CHECK(differs);

  auto converted = a.config;
  CHECK_THROWS_WITH_AS(esft::pipeline::convert_to_select_moe(checkpoint, converted, naming, o),
                       doctest::Contains("already a Select-MoE model"), esft::Error);
  auto qwen = config;
  qwen["model_type"] = "qwen3_moe";
  CHECK_THROWS_WITH_AS(esft::pipeline::convert_to_select_moe(checkpoint, qwen, naming, o),
                       doctest::Contains("not model_type \"qwen3_moe\""), esft::Error);
  o.trash_experts = -1;
  CHECK_THROWS_WITH_AS(esft::pipeline::convert_to_select_moe(checkpoint, config, naming, o),
                       doctest::Contains("at least 1"), esft::Error);
}

TEST_CASE("select moe: the converted model loads, routes over E+T columns, and the constraint follows") {
  const auto c0 = converted_olmoe();
  const auto& mc = c0.config;
  const auto& converted = c0.conversion;
  auto model = c0.model;
  Recorder recorder;
  esft::ForwardOptions fo;
  fo.hooks.push_back(&recorder);
  at::NoGradGuard no_grad;
  const auto ids = at::randint(0, mc.vocab_size, {2, 7}, at::kLong);
  model->forward(ids, {}, fo);
  REQUIRE(recorder.events.size() == 2);
  const int64_t E = mc.num_experts, T = converted.trash_experts;
  for (const auto& e : recorder.events) {
    CHECK(e.router_logits.size(1) == E + T);
    CHECK(e.trash_experts == T);
    CHECK(at::allclose(e.probs, at::softmax(e.router_logits.to(at::kFloat), -1)));
  }
  const auto c = esft::TrashConstraint::from_config(mc);
  CHECK(c.weight == 0.01);
  esft::TrashConstraintHook hook(c);
  for (const auto& e : recorder.events) hook.on_route(e);
  const auto r0 = recorder.events[0].probs.narrow(1, E, T).sum(1).clamp(1e-8, 1 - 1e-8);
  const auto r1 = recorder.events[1].probs.narrow(1, E, T).sum(1).clamp(1e-8, 1 - 1e-8);
  const double expected = ((-4 * at::log1p(-r0)).mean() + (-4 * at::log1p(-r1)).mean()).item<double>() / 2;
  CHECK(hook.take_loss().item<double>() == doctest::Approx(expected));
}

TEST_CASE("select moe: selection keeps floor(N * fraction), best first, ties in input order") {
  const std::vector<double> q = {0.5, 0.9, 0.7, 0.9, 0.1, 0.7, 0.3, 0.2, 0.6, 0.4};
  CHECK(esft::pipeline::select_best(q, 0.3) == std::vector<size_t>{1, 3, 2});
  CHECK(esft::pipeline::select_best(q, 0.45) == std::vector<size_t>{1, 3, 2, 5});
  CHECK(esft::pipeline::select_best(q, 1.0).size() == 10);
  CHECK(esft::pipeline::select_best(q, 0.05).empty());
  CHECK(esft::pipeline::select_best(std::vector<double>(100, 0.5), 0.29).size() == 29);  // not 28.999...
  for (double bad : {0.0, -0.1, 1.5})
    CHECK_THROWS_WITH_AS(esft::pipeline::select_best(q, bad), doctest::Contains("(0, 1]"), esft::Error);
}

TEST_CASE("select moe: quality scores of padded batches equal one sample at a time, by hand from router events") {
  const auto c0 = converted_olmoe();
  const auto& mc = c0.config;
  const auto& converted = c0.conversion;
  const auto& family = c0.family;
  auto model = c0.model;
  model->eval();

  std::vector<esft::data::Sample> samples;
  for (int len : {5, 9, 3, 7, 9}) {
    esft::data::Sample s;
    for (int t = 0; t < len; ++t) s.ids.push_back((len * 31 + t * 7) % 384);
    s.labels = s.ids;
    s.origin = "sample of " + std::to_string(len);
    samples.push_back(s);
  }
  esft::pipeline::QualityOptions o;
  o.batch_size = 2;
  const auto batched = esft::pipeline::score_quality(*model, samples, 0, at::kCPU, o);
  REQUIRE(batched.size() == samples.size());
  const int64_t E = mc.num_experts, T = converted.trash_experts;
  for (size_t i = 0; i < samples.size(); ++i) {
    Recorder recorder;
    esft::ForwardOptions fo;
    fo.hooks.push_back(&recorder);
    at::NoGradGuard no_grad;
    model->forward(at::tensor(std::vector<int64_t>(samples[i].ids.begin(), samples[i].ids.end()), at::kLong).unsqueeze(0),
                   {}, fo);
    double by_hand = 0;
    for (const auto& e : recorder.events) by_hand += (1 - e.probs.narrow(1, E, T).sum(1)).mean().item<double>();
    by_hand /= static_cast<double>(recorder.events.size());
    CAPTURE(i);
    CHECK(batched[i] == doctest::Approx(by_hand).epsilon(1e-5));
  }
  o.max_length = 3;  // every sample scored on its first 3 tokens: samples 1 and 4 are then the same
  const auto cut = esft::pipeline::score_quality(*model, samples, 0, at::kCPU, o);
  CHECK(cut[1] == doctest::Approx(cut[4]));

  auto plain = family->create(esft::ModelConfig::from_json(esft::read_json_file(kOlmoe / "config.json"), "olmoe"),
                              at::kCPU, at::kFloat);
  CHECK_THROWS_WITH_AS(esft::pipeline::score_quality(*plain, samples, 0, at::kCPU, o),
                       doctest::Contains("no trash experts"), esft::Error);
}

TEST_CASE("select moe: training figures count no trash can as an expert, and a file sets steps or epochs") {
  esft::train::RoutingTally tally;
  esft::RouterEvent e;
  e.layer = 0;
  e.topk_idx = at::tensor({0, 3, 3, 1}, at::kLong).reshape({2, 2});
  e.router_logits = at::zeros({2, 4});
  e.trash_experts = 1;
  tally.on_route(e);
  esft::train::RoutingFigures f;
  tally.read_into(f);
  CHECK(f.expert_pairs.at(0) == std::vector<double>{1, 1, 0});
  CHECK(f.routed_pairs == 4);

  esft::train::TrainOptions router_defaults;
  router_defaults.epochs = 4;
  const auto by_steps = esft::train::TrainOptions::parse_toml("steps = 7\n", "t.toml", router_defaults);
  CHECK(by_steps.steps == 7);
  CHECK(by_steps.epochs == 0);
  CHECK(esft::train::TrainOptions::parse_toml("epochs = 2\n", "t.toml", router_defaults).epochs == 2);
  CHECK_THROWS_WITH_AS(esft::train::TrainOptions::parse_toml("steps = 7\nepochs = 2\n", "t.toml", router_defaults),
                       doctest::Contains("set steps or epochs, not both"), esft::Error);
}
