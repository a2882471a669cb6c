// Training from scratch (train --method pretrain) on tinymoe: the routers' objective (load balancing, Boids with
// soft top-1 gates), the routing figures against hand-computed values, stream packing, exact resumption with router
// jitter on, metrics.csv, the best checkpoint and early stopping.
#include <ATen/ATen.h>
#include "doctest_torch.h"

#include <cmath>
#include <fstream>

#include "esft/data/batching.h"
#include "esft/error.h"
#include "esft/pipeline/trainable.h"
#include "esft/train/router_objective.h"
#include "esft/train/trainer.h"
#include "plugin_loader.h"
#include "test_support.h"

namespace {

namespace fs = std::filesystem;
using esft::train::RoutingFigures;
using esft::train::TrainOptions;
using test_support::TempDir;

std::shared_ptr<esft::MoECausalLM> tiny_tinymoe() {
  static esft::host::PluginLoader loader(std::vector<fs::path>{ESFT_BIN_DIR});
  const nlohmann::json config = {{"model_type", "tinymoe"}, {"vocab_size", 40},   {"hidden_size", 16},
                                 {"num_hidden_layers", 2},  {"num_attention_heads", 2}, {"max_position_embeddings", 32},
                                 {"num_experts", 4},        {"capacity_factor", 1.0},   {"router_jitter", 0.3}};
  auto family = loader.load("tinymoe_boids");
  auto model = family->create(esft::ModelConfig::from_json(config, "test config"), at::kCPU, at::kFloat);
  at::manual_seed(3);
  {
    at::NoGradGuard no_grad;
    for (auto& p : model->parameters()) p.normal_(0, 0.2);
  }
  esft::pipeline::apply_expert_config(*model, family->naming(), esft::pipeline::everything_config(*model));
  return model;
}

std::vector<esft::data::Row> rows(int n, int length, uint64_t seed) {
  esft::data::Random random(seed);
  std::vector<esft::data::Row> out(static_cast<size_t>(n));
  for (auto& r : out) {
    for (int t = 0; t < length; ++t) {
      // A learnable pattern: each token is the previous one plus one, mod 40, from a random start.
      const auto id = static_cast<int32_t>(t == 0 ? random.below(40) : (r.ids.back() + 1) % 40);
      r.ids.push_back(id);
      r.labels.push_back(id);
      r.attention_mask.push_back(1);
    }
  }
  return out;
}

TrainOptions boids_options(int64_t steps) {
  TrainOptions o = esft::train::pretrain_defaults();
  o.learning_rate = 3e-3;
  o.steps = steps;
  o.warmup_steps = 1;
  o.batch_size = 2;
  o.gradient_accumulation_steps = 2;
  o.seq_length = 16;
  o.eval_steps = 2;
  o.save_steps = 0;
  o.router_mode = esft::train::RouterMode::Boids;
  o.boids.k_nn = 4;
  o.boids.warmup_frac = 0.5;
  o.boids_all_layers = true;
  return o;
}

struct Result {
  std::vector<double> losses;
  std::vector<RoutingFigures> figures;
  std::map<std::string, at::Tensor> weights;
  esft::train::Trainer::Outcome outcome;
};

Result train(const fs::path& out, const TrainOptions& options, bool resume) {
  auto model = tiny_tinymoe();
  esft::train::Trainer trainer(*model, options, rows(8, 16, 1), rows(4, 16, 2), 0, c10::Device(c10::kCPU), out,
                               {{"test", "pretrain"}});
  if (resume) trainer.resume();
  Result r;
  r.outcome = trainer.run(nullptr, [&](const esft::train::StepReport& s) {
    r.losses.push_back(s.loss);
    r.figures.push_back(s.routing);
  });
  for (const auto& item : model->named_parameters()) r.weights[item.key()] = item.value().detach().clone();
  return r;
}

std::vector<std::string> lines_of(const fs::path& p) {
  std::ifstream in(p);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

}  // namespace

TEST_CASE("pretrain: routing figures (drops, utilisation entropy, overuse) against hand-computed values") {
  RoutingFigures f;
  f.routed_pairs = 8;
  f.dropped_pairs = 2;
  f.expert_pairs[0] = {4, 4, 0, 0};  // entropy ln 2, normalised 1/2
  f.expert_pairs[1] = {2, 2, 2, 2};  // ln 4, normalised 1
  CHECK(*f.drop_fraction() == doctest::Approx(0.25));
  CHECK(*f.utilisation_entropy(false) == doctest::Approx((std::log(2.0) + std::log(4.0)) / 2));
  CHECK(*f.utilisation_entropy(true) == doctest::Approx(0.75));
  CHECK(*f.overuse_rate(1.5) == doctest::Approx(2.0 / 8));  // shares 1/2 > 1.5/4 twice; 1/4 never
  CHECK(*f.overuse_rate() == doctest::Approx(0));          // the default 2/E: none of the 8 exceeds 1/2
  CHECK_FALSE(RoutingFigures().drop_fraction());

  RoutingFigures a, b;
  a.aux = 1.0, a.micro_batches = 1;
  b.aux = 4.0, b.micro_batches = 3;
  a.add(b);
  CHECK(*a.aux == doctest::Approx(3.25));  // weighted by micro-batches
  const auto back = RoutingFigures::from_json(f.to_json());
  CHECK(back.expert_pairs == f.expert_pairs);
  CHECK(back.dropped_pairs == 2);
}

TEST_CASE("pretrain: the routing tally counts real (token, choice) pairs per expert and the dropped ones") {
  esft::RouterEvent e;
  e.layer = 3;
  e.router_logits = at::zeros({4, 3});
  e.topk_idx = at::tensor({0, 2, 2, 1}, at::kLong).unsqueeze(1);
  e.token_mask = at::tensor({1, 1, 1, 0}, at::kLong).to(at::kBool);
  e.dropped = at::tensor({0, 0, 1, 1}, at::kLong).to(at::kBool).unsqueeze(1);  // padding counts as dropped in the event
  esft::train::RoutingTally tally;
  tally.on_route(e);
  tally.on_route(e);
  RoutingFigures f;
  tally.read_into(f);
  CHECK(f.expert_pairs.at(3) == std::vector<double>{2, 0, 4});
  CHECK(f.routed_pairs == 6);
  CHECK(f.dropped_pairs == 2);  // the padding token is neither routed nor dropped
}

TEST_CASE("pretrain: stream packing keeps every token, cut into windows: only the last is padded") {
  std::vector<esft::data::Sample> samples(2);
  samples[0].ids = {1, 2, 3, 4, 5};
  samples[0].labels = samples[0].ids;
  samples[1].ids = {6, 7, 8};
  samples[1].labels = {-100, 7, 8};
  const auto r = esft::data::stream_samples(samples, 3, 0);
  REQUIRE(r.size() == 3);
  CHECK(r[0].ids == std::vector<int32_t>{1, 2, 3});
  CHECK(r[1].ids == std::vector<int32_t>{4, 5, 6});
  CHECK(r[1].labels == std::vector<int32_t>{4, 5, -100});
  CHECK(r[2].ids == std::vector<int32_t>{7, 8, 0});
  CHECK(r[2].attention_mask == std::vector<uint8_t>{1, 1, 0});
  CHECK(r[2].labels == std::vector<int32_t>{7, 8, -100});
}

TEST_CASE("pretrain: Boids reaches a top-1 router through its soft gates: k_nn >= tokens is an error") {
  auto model = tiny_tinymoe();
  model->train();
  TrainOptions o = boids_options(10);
  o.aux_loss_coef = 0;  // the router's gradient then comes from Boids alone (and the LM loss, which is not added)
  esft::train::RouterObjective objective(o, true);
  esft::ForwardOptions fo;
  fo.logits = esft::LogitsMode::None;
  objective.prepare(fo);
  const auto ids = at::randint(40, {2, 16}, at::kLong);
  const auto mask = at::ones({2, 16}, at::kLong);
  auto out = model->forward(ids, mask, fo);
  const auto loss = objective.loss(out, mask, /*step=*/10, 1.0);
  REQUIRE(loss.defined());
  loss.backward();
  for (auto* layer : model->moe_layers()) {
    auto& router = layer->router();
    at::Tensor grad;
    for (const auto& p : router.parameters())
      if (p.grad().defined()) grad = p.grad();
    REQUIRE(grad.defined());
    CHECK(grad.abs().sum().item<double>() > 0);
  }
  const auto f = objective.take_figures();
  CHECK(f.boids_cohesion);
  CHECK(f.aux);  // reported although its coefficient is 0

  o.boids.k_nn = 32;
  esft::train::RouterObjective too_many(o, true);
  esft::ForwardOptions fo2;
  fo2.logits = esft::LogitsMode::None;
  too_many.prepare(fo2);
  auto out2 = model->forward(ids, mask, fo2);
  CHECK_THROWS_WITH_AS(too_many.loss(out2, mask, 1, 1.0), doctest::Contains("smaller than the 32 real tokens"),
                       esft::Error);
}

TEST_CASE("pretrain: 6 steps straight equal 3, resume, 3 with jitter and Boids on: metrics.csv and the best") {
  TempDir straight;
  const auto a = train(straight.path, boids_options(6), false);
  TempDir cut;
  {
    auto o = boids_options(6);
    o.save_steps = 3;
    auto model = tiny_tinymoe();
    esft::train::Trainer trainer(*model, o, rows(8, 16, 1), rows(4, 16, 2), 0, c10::Device(c10::kCPU), cut.path,
                                 {{"test", "pretrain"}});
    std::atomic<int> stop{0};
    trainer.run(&stop, [&](const esft::train::StepReport& s) {
      if (s.step == 3) stop = 15;
    });
    CHECK(trainer.step() == 3);
  }
  const auto second = train(cut.path, boids_options(6), true);
  REQUIRE(a.losses.size() == 6);
  REQUIRE(second.losses.size() == 3);
  for (int i = 0; i < 3; ++i) CHECK(a.losses[i + 3] == second.losses[i]);
  for (const auto& entry : a.weights) {
    const auto& key = entry.first;
    CAPTURE(key);
    CHECK(at::equal(entry.second, second.weights.at(key)));
  }
  CHECK(a.losses.back() < a.losses.front());
  CHECK(a.figures[0].boids_cohesion);
  CHECK(a.figures[0].drop_fraction());

  // metrics.csv: the header and one row per eval (steps 2, 4, 6), the same after the resumption.
  const auto csv = lines_of(straight.path / "metrics.csv");
  REQUIRE(csv.size() == 4);
  CHECK(csv[0].rfind("step,train_loss,aux,val_loss,val_ppl,tokens_per_sec,mem_mb,drop_frac,", 0) == 0);
  CHECK(csv[3].rfind("6,", 0) == 0);
  const auto resumed_csv = lines_of(cut.path / "metrics.csv");
  REQUIRE(resumed_csv.size() == 4);
  auto val_loss = [](const std::string& row) {  // the 4th column
    size_t at = 0;
    for (int i = 0; i < 3; ++i) at = row.find(',', at) + 1;
    return row.substr(at, row.find(',', at) - at);
  };
  for (size_t i = 1; i < 4; ++i) CHECK(val_loss(resumed_csv[i]) == val_loss(csv[i]));
  CHECK(fs::exists(straight.path / "checkpoints" / "best" / "trainable.safetensors"));
}

TEST_CASE("pretrain: early stop after `patience` evaluations without improvement") {
  TempDir dir;
  auto o = boids_options(20);
  o.learning_rate = 0;  // nothing improves after the first evaluation
  o.eval_steps = 1;
  o.early_stop_patience = 2;
  const auto r = train(dir.path, o, false);
  CHECK(r.outcome == esft::train::Trainer::Outcome::EarlyStopped);
  CHECK(r.losses.size() == 3);  // evals at 1 (best), 2 and 3 (no improvement: stop)
  auto bad = boids_options(5);
  bad.early_stop_patience = -1;
  CHECK_THROWS_WITH_AS(bad.validate(), doctest::Contains("early_stop_patience"), esft::Error);
}
