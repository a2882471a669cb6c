// ESFT training on the tiny fixture models: freezing, the optimizer, checkpoints and exact resumption, adapters
// (written, applied, merged), the schedule and the TOML settings.
#include <ATen/ATen.h>
#include "doctest_torch.h"
#include <torch/autograd.h>
#include <torch/optim/adamw.h>

#include <fstream>
#include <map>
#include <set>

#include "esft/error.h"
#include "esft/io/json_file.h"
#include "esft/io/sha256.h"
#include "esft/io/weights.h"
#include "esft/model/losses.h"
#include "esft/pipeline/adapter_io.h"
#include "esft/pipeline/adapter_merge.h"
#include "esft/pipeline/trainable.h"
#include "esft/train/trainer.h"
#include "test_support.h"
#include "tiny_models.h"

namespace {

namespace fs = std::filesystem;
using esft::pipeline::ExpertConfig;
using test_support::TempDir;
using namespace tiny_models;

ExpertConfig two_experts_per_layer(esft::MoECausalLM& model) {
  ExpertConfig c;
  for (auto* layer : model.moe_layers()) {
    const int64_t E = layer->num_experts();
    c.experts[layer->layer_index()] = {(layer->layer_index() + 5) % E, (layer->layer_index() * 3 + 2) % E};
  }
  return c;
}

std::set<std::string> expected_expert_keys(const esft::ModelFamily& family, const ExpertConfig& c) {
  std::set<std::string> keys;
  for (const auto& [layer, experts] : c.experts)
    for (int64_t e : experts)
      for (auto role : {esft::Role::EXPERT_GATE, esft::Role::EXPERT_UP, esft::Role::EXPERT_DOWN})
        keys.insert(family.naming().name(role, layer, static_cast<int>(e)));
  return keys;
}

struct Run {
  std::vector<double> losses;
  std::map<std::string, at::Tensor> weights;
};

// Trains `steps` steps into `out`, optionally resuming there first.
Run train_run(const std::string& plugin, const std::string& fixture, const fs::path& out, int64_t steps, bool resume,
              const std::function<void(Tiny&)>& after = {}) {
  auto t = load_tiny(plugin, fixture);
  const auto config = two_experts_per_layer(*t.model);
  esft::pipeline::apply_expert_config(*t.model, t.family->naming(), config);
  esft::train::Trainer trainer(*t.model, small_options(steps), random_rows(6, 16, t.config.vocab_size, 7),
                               random_rows(2, 16, t.config.vocab_size, 8), 0, c10::Device(c10::kCPU), out,
                               {{"test", plugin}});
  if (resume) trainer.resume();
  Run r;
  trainer.run(nullptr, [&](const esft::train::StepReport& s) { r.losses.push_back(s.loss); });
  r.weights = snapshot(*t.model);
  if (after) after(t);
  return r;
}

}  // namespace

TEST_CASE("training: ESFT freezing leaves every frozen tensor bit-identical and trains the selected experts") {
  for (const auto& entry : std::vector<std::pair<std::string, std::string>>{
           {"qwen3_moe", "qwen3_moe"}, {"qwen2_moe", "qwen2_moe"}, {"gpt_oss", "gpt_oss"}}) {
    const auto& plugin = entry.first;  // not a structured binding: doctest's CAPTURE captures it
    const auto& fixture = entry.second;
    CAPTURE(plugin);
    auto t = load_tiny(plugin, fixture);
    const auto before = snapshot(*t.model);
    const auto config = two_experts_per_layer(*t.model);
    esft::pipeline::apply_expert_config(*t.model, t.family->naming(), config);
    TempDir out;
    esft::train::Trainer trainer(*t.model, small_options(3), random_rows(4, 16, t.config.vocab_size, 1), {}, 0,
                                 c10::Device(c10::kCPU), out.path, {});
    // Only expert tensors train: 3 (or 2 fused + 2 bias) tensors' worth per selected expert.
    int64_t expected = 0;
    for (auto* layer : t.model->moe_layers()) {
      const auto& s = layer->experts().spec();
      expected += static_cast<int64_t>(config.experts.at(layer->layer_index()).size()) *
                  (3 * s.intermediate * s.hidden + (s.bias ? 2 * s.intermediate + s.hidden : 0));
    }
    CHECK(trainer.trainable_numel() == expected);
    trainer.run(nullptr);

    const auto trained = esft::pipeline::trained_checkpoint_tensors(*t.model);
    std::set<std::string> trained_names;
    for (const auto& [name, tensor] : trained) trained_names.insert(name);
    const auto after = snapshot(*t.model);
    for (const auto& entry : before) {
      const auto& key = entry.first;  // not a structured binding: doctest's CAPTURE captures it
      const auto& value = entry.second;
      CAPTURE(key);
      const auto m = t.family->naming().match(key);
      REQUIRE(m.has_value());
      if (!esft::pipeline::is_routed_expert_role(m->role)) {
        CHECK(bit_identical(value, after.at(key)));
        continue;
      }
      const auto& selected = config.experts.at(m->layer);
      if (m->expert >= 0) {  // per-expert tensor: changed iff selected, and in the adapter iff selected
        const bool is_selected = std::count(selected.begin(), selected.end(), m->expert) != 0;
        CHECK(bit_identical(value, after.at(key)) == !is_selected);
        CHECK(trained_names.count(key) == (is_selected ? 1u : 0u));
      } else {  // fused tensor: slice e changed iff selected, and the adapter holds exactly those slices
        for (int64_t e = 0; e < value.size(0); ++e) {
          const bool is_selected = std::count(selected.begin(), selected.end(), e) != 0;
          CHECK(bit_identical(value[e], after.at(key)[e]) == !is_selected);
          CHECK(trained_names.count(esft::pipeline::adapter_slice_name(key, e)) == (is_selected ? 1u : 0u));
        }
      }
    }
    if (plugin != "gpt_oss") CHECK(trained_names == expected_expert_keys(*t.family, config));
  }
}

TEST_CASE("training: 6 steps straight equal 3 steps, resume, 3 steps (losses and weights, CPU)") {
  TempDir straight, split;
  const auto a = train_run("qwen3_moe", "qwen3_moe", straight.path, 6, false);
  const auto first = train_run("qwen3_moe", "qwen3_moe", split.path, 3, false);
  CHECK(esft::train::list_checkpoints(split.path).size() == 1);
  const auto second = train_run("qwen3_moe", "qwen3_moe", split.path, 6, true);
  REQUIRE(a.losses.size() == 6);
  REQUIRE(first.losses.size() == 3);
  REQUIRE(second.losses.size() == 3);
  for (int i = 0; i < 3; ++i) {
    CHECK(a.losses[i] == first.losses[i]);
    CHECK(a.losses[i + 3] == second.losses[i]);
  }
  CHECK(a.losses.back() < a.losses.front());
  for (const auto& entry : a.weights) {
    const auto& key = entry.first;  // not a structured binding: doctest's CAPTURE captures it
    const auto& value = entry.second;
    CAPTURE(key);
    CHECK(bit_identical(value, second.weights.at(key)));
  }
  // metrics.jsonl of the resumed run holds each step once.
  std::ifstream in(split.path / "metrics.jsonl");
  int lines = 0;
  for (std::string line; std::getline(in, line);) lines += nlohmann::json::parse(line).contains("loss");
  CHECK(lines == 6);
}

TEST_CASE("training: resume refuses a checkpoint made by another run, and a folder without one") {
  TempDir out;
  auto t = load_tiny("qwen3_moe", "qwen3_moe");
  esft::pipeline::apply_expert_config(*t.model, t.family->naming(), two_experts_per_layer(*t.model));
  auto rows = random_rows(2, 16, t.config.vocab_size, 1);
  esft::train::Trainer none(*t.model, small_options(1), rows, {}, 0, c10::Device(c10::kCPU), out.path, {{"a", 1}});
  CHECK_THROWS_WITH_AS(none.resume(), doctest::Contains("no checkpoint"), esft::Error);
  none.run(nullptr);
  esft::train::Trainer other(*t.model, small_options(2), rows, {}, 0, c10::Device(c10::kCPU), out.path, {{"a", 2}});
  CHECK_THROWS_WITH_AS(other.resume(), doctest::Contains("a differ"), esft::Error);
}

TEST_CASE("training: the adapter applied to a fresh base, and merged into the base, reproduce the trained model") {
  for (const auto& entry : std::vector<std::pair<std::string, std::string>>{
           {"qwen3_moe", "qwen3_moe"}, {"qwen2_moe", "qwen2_moe"}, {"gpt_oss", "gpt_oss"}}) {
    const auto& plugin = entry.first;  // not a structured binding: doctest's CAPTURE captures it
    const auto& fixture = entry.second;
    CAPTURE(plugin);
    TempDir out;
    std::map<std::string, at::Tensor> trained;
    ExpertConfig config;
    const auto fixture_dir = fs::path(ESFT_TEST_DATA_DIR) / "hf" / fixture / "model";
    train_run(plugin, fixture, out.path, 2, false, [&](Tiny& t) {
      config = two_experts_per_layer(*t.model);
      esft::pipeline::AdapterManifest manifest;
      manifest.method = "esft";
      manifest.family = plugin;
      manifest.model_type = t.config.model_type;
      manifest.base_model = t.dir.string();
      manifest.base_config_sha256 = esft::sha256_file_hex(t.dir / "config.json");
      manifest.dtype = "float32";
      esft::pipeline::save_adapter(*t.model, out / "adapter", manifest, config);
      trained = snapshot(*t.model);
    });
    CHECK(esft::pipeline::ExpertConfig::load(out / "adapter" / "expert_config.json").experts == config.experts);

    auto fresh = load_tiny(plugin, fixture);
    const auto base = snapshot(*fresh.model);
    CHECK(esft::pipeline::apply_adapter(*fresh.model, esft::pipeline::AdapterFolder::open(out / "adapter"), fresh.dir) > 0);
    const auto applied = snapshot(*fresh.model);

    esft::pipeline::MergeOptions merge;
    merge.base_dir = fresh.dir;
    merge.adapter_dir = out / "adapter";
    merge.out_dir = out / "merged";
    esft::pipeline::merge_adapter(merge);
    auto merged_model = load_tiny(plugin, fixture);
    esft::load_checkpoint(*merged_model.model, esft::Checkpoint::open(out / "merged"), "merged");
    const auto merged = snapshot(*merged_model.model);

    // qwen2_moe's checkpoint is bfloat16: the merge rounds trained values to it, the in-memory model does not.
    const auto base_dtype = esft::Checkpoint::open(fresh.dir).info(base.begin()->first).dtype;
    for (const auto& entry : trained) {
      const auto& key = entry.first;  // not a structured binding: doctest's CAPTURE captures it
      const auto& value = entry.second;
      CAPTURE(key);
      CHECK(bit_identical(applied.at(key), value));
      if (base_dtype == esft::DType::BF16) {
        CHECK(bit_identical(merged.at(key), value.to(at::kBFloat16).to(at::kFloat)));
      } else {
        CHECK(bit_identical(merged.at(key), value));
      }
    }
    // Sanity: training changed something, so the checks above could fail.
    bool changed = false;
    for (const auto& [key, value] : trained) changed = changed || !bit_identical(value, base.at(key));
    CHECK(changed);
  }
}

TEST_CASE("training: chunked cross-entropy equals the loss over whole logits, with its gradients") {
  at::manual_seed(5);
  auto hidden = at::randn({2, 7, 8}).set_requires_grad(true);
  auto weight = at::randn({11, 8}).set_requires_grad(true);
  auto labels = at::randint(11, {2, 7}, at::kLong);
  labels[0][3] = esft::kIgnoreIndex;
  labels[1][6] = esft::kIgnoreIndex;
  auto whole = esft::causal_lm_loss(at::matmul(hidden, weight.t()), labels);
  auto whole_grads = torch::autograd::grad({whole}, {hidden, weight});
  for (const int64_t chunk : {1, 3, 14, 100}) {
    CAPTURE(chunk);
    auto chunked = esft::chunked_causal_lm_loss(hidden, weight, labels, chunk);
    auto grads = torch::autograd::grad({chunked}, {hidden, weight});
    CHECK(std::abs(chunked.item<double>() - whole.item<double>()) < 1e-6);
    CHECK(test_support::max_diff(grads[0], whole_grads[0]) < 1e-6);
    CHECK(test_support::max_diff(grads[1], whole_grads[1]) < 1e-6);
  }
  // A frozen output embedding gets no gradient, and the hidden states still do.
  auto frozen = weight.detach();
  auto g = torch::autograd::grad({esft::chunked_causal_lm_loss(hidden, frozen, labels, 4)}, {hidden});
  CHECK(test_support::max_diff(g[0], whole_grads[0]) < 1e-6);
}

TEST_CASE("training: AdamW equals torch::optim::AdamW (moments, bias correction, decoupled decay)") {
  at::manual_seed(3);
  auto w = at::randn({4, 5}), b = at::randn({5});
  auto ours_w = w.clone().set_requires_grad(true), ours_b = b.clone().set_requires_grad(true);
  auto ref_w = w.clone().set_requires_grad(true), ref_b = b.clone().set_requires_grad(true);
  esft::train::AdamWSettings s;
  s.weight_decay = 0.1;
  esft::train::AdamW ours({{"w", ours_w}, {"b", ours_b}}, s);
  // torch's AdamW decays every tensor; ours leaves 1-D tensors alone, so the reference uses two groups.
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(std::vector<at::Tensor>{ref_w},
                      std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(1e-2).betas({0.9, 0.95}).eps(1e-8).weight_decay(0.1)));
  groups.emplace_back(std::vector<at::Tensor>{ref_b},
                      std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(1e-2).betas({0.9, 0.95}).eps(1e-8).weight_decay(0)));
  torch::optim::AdamW reference(groups, torch::optim::AdamWOptions(1e-2));
  for (int step = 0; step < 5; ++step) {
    auto gw = at::randn({4, 5}), gb = at::randn({5});
    ours_w.mutable_grad() = gw.clone();
    ours_b.mutable_grad() = gb.clone();
    ref_w.mutable_grad() = gw.clone();
    ref_b.mutable_grad() = gb.clone();
    ours.step(1e-2);
    reference.step();
  }
  CHECK(test_support::max_diff(ours_w, ref_w) < 1e-6);
  CHECK(test_support::max_diff(ours_b, ref_b) < 1e-6);
  CHECK(ours.state_bytes() == 2 * (20 + 5) * 4);
}

TEST_CASE("training: a bfloat16 parameter keeps a float32 master copy, so small updates are not lost") {
  auto p = at::ones({8, 8}, at::kBFloat16).set_requires_grad(true);
  esft::train::AdamWSettings s;
  s.weight_decay = 0;
  esft::train::AdamW opt({{"p", p}}, s);
  for (int i = 0; i < 100; ++i) {
    p.mutable_grad() = at::ones({8, 8}, at::kBFloat16);
    opt.step(1e-5);  // each update (1e-5) is far below bfloat16's step at 1.0 (2^-7)
  }
  const auto state = opt.state();
  const auto master = std::find_if(state.begin(), state.end(), [](const auto& kv) { return kv.first == "master.p"; });
  REQUIRE(master != state.end());
  CHECK((master->second.scalar_type() == at::kFloat));
  CHECK(master->second[0][0].item<double>() == doctest::Approx(1.0 - 1e-3).epsilon(1e-4));
}

TEST_CASE("training: gradient clipping scales to max_norm and reports the norm before") {
  auto a = at::zeros({2}).set_requires_grad(true), b = at::zeros({1}).set_requires_grad(true);
  a.mutable_grad() = at::tensor({3.0f, 0.0f});
  b.mutable_grad() = at::tensor({4.0f});
  CHECK(esft::train::clip_grad_norm({a, b}, 1.0) == doctest::Approx(5.0));
  CHECK(a.grad()[0].item<double>() == doctest::Approx(3.0 / 5.0).epsilon(1e-5));
  CHECK(esft::train::clip_grad_norm({a, b}, 10.0) == doctest::Approx(1.0).epsilon(1e-5));
}

TEST_CASE("training: learning-rate schedules follow transformers' constant_with_warmup and cosine") {
  esft::train::TrainOptions o;
  o.steps = 10;
  o.warmup_steps = 2;
  CHECK(esft::train::lr_factor(o, 0) == 0.0);
  CHECK(esft::train::lr_factor(o, 1) == 0.5);
  CHECK(esft::train::lr_factor(o, 2) == 1.0);
  CHECK(esft::train::lr_factor(o, 9) == 1.0);
  o.lr_scheduler = esft::train::LrSchedule::Cosine;
  CHECK(esft::train::lr_factor(o, 2) == 1.0);
  CHECK(esft::train::lr_factor(o, 6) == doctest::Approx(0.5));
  CHECK(esft::train::lr_factor(o, 10) == doctest::Approx(0.0));
  o.warmup_steps = 0;
  o.lr_scheduler = esft::train::LrSchedule::Constant;
  CHECK(esft::train::lr_factor(o, 0) == 1.0);
}

TEST_CASE("training: TOML settings override the reference's defaults, typos and bad values are errors") {
  TempDir dir;
  auto write = [&](const std::string& text) {
    std::ofstream(dir / "t.toml") << text;
    return dir / "t.toml";
  };
  const auto o = esft::train::TrainOptions::load_toml(
      write("learning_rate = 2e-5\nsteps = 7\npacking = false\nlr_scheduler = \"cosine\"\n"), {});
  CHECK(o.learning_rate == 2e-5);
  CHECK(o.steps == 7);
  CHECK_FALSE(o.packing);
  CHECK(o.lr_scheduler == esft::train::LrSchedule::Cosine);
  CHECK(o.adam_beta2 == 0.95);
  CHECK(o.weight_decay == 0.1);
  CHECK(o.gradient_accumulation_steps == 16);
  CHECK(esft::train::TrainOptions::load_toml(write("[train]\nseq_length = 128\n"), {}).seq_length == 128);
  CHECK_THROWS_WITH_AS(esft::train::TrainOptions::load_toml(write("learnig_rate = 1\n"), {}),
                       doctest::Contains("learnig_rate: unknown setting"), esft::Error);
  CHECK_THROWS_WITH_AS(esft::train::TrainOptions::load_toml(write("steps = \"10\"\n"), {}),
                       doctest::Contains("steps must be an integer"), esft::Error);
  CHECK_THROWS_WITH_AS(esft::train::TrainOptions::load_toml(write("adam_beta1 = 1.5\n"), {}),
                       doctest::Contains("adam_beta1 must be in [0, 1)"), esft::Error);
  CHECK_THROWS_WITH_AS(esft::train::TrainOptions::load_toml(write("steps = \n"), {}), doctest::Contains("t.toml:1"),
                       esft::Error);
}

TEST_CASE("training: expert configs naming a non-MoE layer, an expert >= E or leaving out a layer are refused") {
  auto t = load_tiny("qwen2_moe", "qwen2_moe");  // layer 1 is dense
  const auto sizes = esft::pipeline::moe_layer_sizes(*t.model);
  ExpertConfig c;
  for (const auto& [layer, n] : sizes) c.experts[layer] = {0};
  CHECK_NOTHROW(esft::pipeline::check_expert_config(c, sizes));
  auto bad = c;
  bad.experts[1] = {0};
  CHECK_THROWS_WITH_AS(esft::pipeline::apply_expert_config(*t.model, t.family->naming(), bad),
                       doctest::Contains("layer 1 is not an MoE layer"), esft::Error);
  bad = c;
  bad.experts.begin()->second = {8};
  CHECK_THROWS_WITH_AS(esft::pipeline::check_expert_config(bad, sizes), doctest::Contains("names expert 8"), esft::Error);
  bad = c;
  bad.experts.erase(bad.experts.begin());
  CHECK_THROWS_WITH_AS(esft::pipeline::check_expert_config(bad, sizes), doctest::Contains("has no entry"), esft::Error);
}

TEST_CASE("training: shared_experts and non_expert_modules unfreeze what spec §3 says") {
  auto t = load_tiny("qwen2_moe", "qwen2_moe");
  ExpertConfig c;
  for (auto* layer : t.model->moe_layers()) c.experts[layer->layer_index()] = {};
  c.shared_experts = true;
  esft::pipeline::apply_expert_config(*t.model, t.family->naming(), c);
  std::set<esft::Role> roles;
  for (const auto& b : t.model->checkpoint_bindings())
    if (b.parts().front().trainable()) roles.insert(t.family->naming().match(b.key())->role);
  CHECK((roles == std::set<esft::Role>{esft::Role::SHARED_EXPERT, esft::Role::SHARED_EXPERT_GATE}));

  c.shared_experts = false;
  c.non_expert_modules = true;
  esft::pipeline::apply_expert_config(*t.model, t.family->naming(), c);
  roles.clear();
  for (const auto& b : t.model->checkpoint_bindings())
    if (b.parts().front().trainable()) roles.insert(t.family->naming().match(b.key())->role);
  CHECK(roles.count(esft::Role::EMBED) == 1);
  CHECK(roles.count(esft::Role::ATTENTION) == 1);
  CHECK(roles.count(esft::Role::ROUTER) == 1);
  CHECK(roles.count(esft::Role::DENSE_MLP) == 1);
  CHECK(roles.count(esft::Role::SHARED_EXPERT) == 0);
  CHECK(roles.count(esft::Role::EXPERT_GATE) == 0);
}
