// The tinymoe family (plugins/tinymoe_boids): its config checks, its forward against its own routing decisions
// (capacity drops, probabilities as weights, no jitter or dropout at evaluation), its checkpoint names, and incremental
// decoding against full forwards. The losses themselves are tested in test_switch_router.cpp and test_boids.cpp.
#include <ATen/ATen.h>
#include "doctest_torch.h"

#include <map>

#include "esft/error.h"
#include "esft/model/generate.h"
#include "esft/nn/switch_router.h"
#include "plugin_loader.h"

namespace {

nlohmann::json small_config() {
  return {{"model_type", "tinymoe"}, {"vocab_size", 40},          {"hidden_size", 16}, {"num_hidden_layers", 3},
          {"num_attention_heads", 2}, {"max_position_embeddings", 32}, {"moe_layers", {0, 2}}, {"num_experts", 4},
          {"capacity_factor", 1.0},   {"router_jitter", 0.5}};
}

struct Loaded {
  std::shared_ptr<esft::ModelFamily> family;
  std::shared_ptr<esft::MoECausalLM> model;
};

Loaded build(const nlohmann::json& config) {
  static esft::host::PluginLoader loader(std::vector<std::filesystem::path>{ESFT_BIN_DIR});
  Loaded l;
  l.family = loader.load("tinymoe_boids");
  l.model = l.family->create(esft::ModelConfig::from_json(config, "test config"), at::kCPU, at::kFloat);
  at::manual_seed(11);
  at::NoGradGuard no_grad;
  for (auto& p : l.model->parameters()) p.normal_(0, 0.5);
  return l;
}

struct Recorder : esft::RouterHook {
  std::map<int, esft::RouterEvent> events;
  void on_route(const esft::RouterEvent& e) override { events[e.layer] = e; }
};

}  // namespace

TEST_CASE("tinymoe: bad configurations are refused with the key named") {
  auto refused = [](const char* key, nlohmann::json value, const char* message) {
    auto c = small_config();
    c[key] = std::move(value);
    CHECK_THROWS_WITH_AS(build(c), doctest::Contains(message), esft::Error);
  };
  refused("moe_layers", "sometimes", "moe_layers must be \"all\", \"none\"");
  refused("moe_layers", 3, "names block 3");
  refused("moe_layers", nlohmann::json::array(), "non-empty list");
  refused("capacity_factor", 0.0, "capacity_factor must be > 0");
  refused("num_experts_per_tok", 5, "num_experts_per_tok 5 is outside [1, 4]");
  refused("router_jitter", -1.0, "router_jitter must be >= 0");
  refused("dropout", 1.0, "dropout must be in [0, 1)");
  refused("num_attention_heads", 3, "not a multiple of num_attention_heads");
  refused("num_hidden_layers", 100000, "num_hidden_layers must be in [1, 4096]");
}

TEST_CASE("tinymoe: checkpoint names, tied embeddings and the placement of MoE blocks") {
  auto l = build(small_config());
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& b : l.model->checkpoint_bindings()) shapes[b.key()] = b.shape();
  CHECK(shapes.at("wte.weight") == std::vector<int64_t>{40, 16});
  CHECK(shapes.at("wpe.weight") == std::vector<int64_t>{32, 16});
  CHECK(shapes.count("lm_head.weight") == 0);
  CHECK(shapes.at("blocks.0.moe.router.weight") == std::vector<int64_t>{4, 16});
  CHECK(shapes.at("blocks.0.moe.experts.w1") == std::vector<int64_t>{4, 64, 16});
  CHECK(shapes.at("blocks.2.moe.experts.b2") == std::vector<int64_t>{4, 16});
  CHECK(shapes.at("blocks.1.ffn.fc1.weight") == std::vector<int64_t>{64, 16});
  CHECK(shapes.at("blocks.1.attn.q_proj.bias") == std::vector<int64_t>{16});
  CHECK(l.model->moe_layers().size() == 2);
  for (const auto& [key, shape] : shapes) CHECK(l.family->naming().match(key).has_value());
}

TEST_CASE("tinymoe: forward follows its own router: top-1 of the softmax, capacity drops in token order, p as weight") {
  auto l = build(small_config());
  l.model->eval();
  const auto ids = at::randint(0, 40, {2, 10}, at::kLong);
  auto mask = at::ones({2, 10}, at::kLong);
  mask[1].narrow(0, 7, 3).zero_();  // padding claims no capacity
  Recorder recorder;
  esft::ForwardOptions options;
  options.hooks.push_back(&recorder);
  options.aux_loss = true;
  at::NoGradGuard no_grad;
  const auto out = l.model->forward(ids, mask, options);
  REQUIRE(recorder.events.size() == 2);
  const auto real = mask.reshape({-1}).to(at::kBool);
  const int64_t capacity = esft::nn::expert_capacity(1.0, 17, 4);  // 17 real tokens
  int64_t dropped = 0;
  for (const auto& [layer, e] : recorder.events) {
    const auto probs = at::softmax(e.router_logits, -1);  // evaluation: no jitter
    CHECK(at::allclose(e.probs, probs));
    CHECK(at::equal(e.topk_idx.select(1, 0), probs.argmax(-1)));
    const auto drops = esft::nn::capacity_drops(e.topk_idx, real, 4, capacity);
    CHECK(at::equal(e.dropped, drops));
    CHECK(at::allclose(e.topk_weight, probs.gather(1, e.topk_idx).masked_fill(drops, 0)));
    dropped += drops.logical_and(real.unsqueeze(1)).sum().item<int64_t>();
  }
  CHECK(dropped > 0);  // 17 tokens at capacity 5 per expert: some must be dropped unless perfectly balanced
  REQUIRE(out.aux_loss.defined());
  double aux = 0;
  for (const auto& [layer, e] : recorder.events)
    aux += esft::nn::switch_load_balancing_loss(e.probs, e.topk_idx.select(1, 0), real).item<double>() / 2;
  CHECK(out.aux_loss.item<double>() == doctest::Approx(aux));
}

TEST_CASE("tinymoe: router jitter acts in training only") {
  auto l = build(small_config());
  const auto ids = at::randint(0, 40, {1, 12}, at::kLong);
  at::NoGradGuard no_grad;
  l.model->eval();
  const auto a = l.model->forward(ids, {}, {}).logits;
  CHECK(at::equal(l.model->forward(ids, {}, {}).logits, a));
  l.model->train();
  CHECK_FALSE(at::allclose(l.model->forward(ids, {}, {}).logits, a));
}

TEST_CASE("tinymoe: dropout acts in training only") {
  auto config = small_config();
  config["router_jitter"] = 0.0;
  auto plain = build(config);
  config["dropout"] = 0.5;
  auto dropping = build(config);  // the same weights (same seed and shapes)
  const auto ids = at::randint(0, 40, {1, 12}, at::kLong);
  at::NoGradGuard no_grad;
  plain.model->eval();
  dropping.model->eval();
  const auto a = plain.model->forward(ids, {}, {}).logits;
  CHECK(at::equal(dropping.model->forward(ids, {}, {}).logits, a));
  plain.model->train();
  CHECK(at::equal(plain.model->forward(ids, {}, {}).logits, a));  // no jitter, no dropout: training mode changes nothing
  dropping.model->train();
  CHECK_FALSE(at::allclose(dropping.model->forward(ids, {}, {}).logits, a));
}

TEST_CASE("tinymoe: greedy decoding with the KV cache equals full forwards (no capacity limit)") {
  auto config = small_config();
  config.erase("capacity_factor");
  auto l = build(config);
  l.model->eval();
  const auto prompt = at::randint(0, 40, {1, 5}, at::kLong);
  const auto generated = esft::greedy_generate(*l.model, prompt, 6, {});
  auto ids = prompt;
  at::NoGradGuard no_grad;
  for (int i = 0; i < 6; ++i) {
    const auto next = l.model->forward(ids, {}, {}).logits.select(1, ids.size(1) - 1).argmax(-1, true);
    ids = at::cat({ids, next}, 1);
  }
  CHECK(at::equal(generated, ids));
  CHECK_THROWS_WITH_AS(l.model->forward(at::zeros({1, 33}, at::kLong), {}, {}), doctest::Contains("32 positions"),
                       esft::Error);
}

TEST_CASE("tinymoe: the statistics pass stops after the last MoE block, and gradients reach every expert used") {
  auto l = build(small_config());
  const auto ids = at::randint(0, 40, {2, 8}, at::kLong);
  Recorder recorder;
  esft::ForwardOptions stats;
  stats.routing_only = true;
  stats.hooks.push_back(&recorder);
  CHECK_FALSE(l.model->forward(ids, {}, stats).logits.defined());
  CHECK(recorder.events.size() == 2);
  l.model->train();
  esft::ForwardOptions train;
  train.aux_loss = true;
  const auto out = l.model->forward(ids, {}, train);
  (out.logits.pow(2).mean() + out.aux_loss).backward();
  for (const auto& p : l.model->named_parameters()) CHECK_MESSAGE(p.value().grad().defined(), p.key());
}
