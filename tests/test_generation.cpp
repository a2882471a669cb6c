// Generation: several prompts of different lengths decoded in one batch give each prompt's own greedy tokens
// (left padding, masks, positions counted per row), and the sampling rules (repetition penalty, temperature,
// top-k, top-p, seeds) choose as transformers' logits processors do.
#include <ATen/ATen.h>
#include "doctest_torch.h"

#include <map>
#include <set>

#include "esft/error.h"
#include "esft/model/generate.h"
#include "esft/model/sampling.h"
#include "plugin_loader.h"
#include "test_support.h"
#include "tiny_models.h"

namespace {

using namespace tiny_models;

std::vector<int64_t> greedy_alone(esft::MoECausalLM& model, const std::vector<int64_t>& prompt, int64_t n) {
  const auto out = esft::greedy_generate(model, at::tensor(prompt, at::kLong).unsqueeze(0), n, {});
  const auto* p = out.data_ptr<int64_t>();
  return std::vector<int64_t>(p + prompt.size(), p + out.size(1));
}

}  // namespace

TEST_CASE("generation: greedy prompts of different lengths in one batch give each prompt's own tokens") {
  for (const auto* fixture : {"qwen3_moe", "gpt_oss", "deepseek_v2"}) {
    CAPTURE(fixture);
    auto t = load_tiny(fixture, fixture);
    t.model->eval();
    std::vector<esft::GenerationRequest> requests;
    for (const auto& prompt : std::vector<std::vector<int64_t>>{{5, 9, 13, 2, 7, 11, 3}, {17}, {4, 4, 8, 15}}) {
      esft::GenerationRequest r;
      r.prompt = prompt;
      r.max_new_tokens = 10;
      requests.push_back(r);
    }
    requests[1].max_new_tokens = 4;  // a row that finishes early
    const auto batch = esft::generate_batch(*t.model, requests, 0);
    REQUIRE(batch.size() == 3);
    for (size_t i = 0; i < requests.size(); ++i) {
      CAPTURE(i);
      CHECK(batch[i].tokens == greedy_alone(*t.model, requests[i].prompt, requests[i].max_new_tokens));
    }
  }
}

TEST_CASE("generation: with learned absolute positions (tinymoe) a left-padded row counts its own positions") {
  // Capacity large enough that no token is dropped: batching then changes nothing but the padding.
  const nlohmann::json config = {{"model_type", "tinymoe"}, {"vocab_size", 40}, {"hidden_size", 16},
                                 {"num_hidden_layers", 2}, {"num_attention_heads", 2}, {"max_position_embeddings", 64},
                                 {"moe_layers", {1}}, {"num_experts", 4}, {"capacity_factor", 16.0}, {"router_jitter", 0.0}};
  esft::host::PluginLoader loader(std::vector<fs::path>{ESFT_BIN_DIR});
  const auto family = loader.load("tinymoe_boids");
  auto model = family->create(esft::ModelConfig::from_json(config, "test config"), at::kCPU, at::kFloat);
  at::manual_seed(3);
  {
    at::NoGradGuard no_grad;
    for (auto& p : model->parameters()) p.normal_(0, 0.5);
  }
  model->eval();
  std::vector<esft::GenerationRequest> requests(2);
  requests[0].prompt = {3, 7, 1, 22, 9, 14, 30};
  requests[1].prompt = {5};
  for (auto& r : requests) r.max_new_tokens = 8;
  const auto batch = esft::generate_batch(*model, requests, 0);
  for (size_t i = 0; i < requests.size(); ++i) {
    CAPTURE(i);
    CHECK(batch[i].tokens == greedy_alone(*model, requests[i].prompt, 8));
  }
  // The forward underneath: a left-padded row with positions from its mask gives its unpadded logits, and with
  // the default positions (counting the padding) it would not.
  at::NoGradGuard no_grad;
  const auto alone = model->forward(at::tensor({5L, 9L}).unsqueeze(0), {}, {}).logits;
  const auto padded = at::tensor({0L, 0L, 0L, 5L, 9L}).unsqueeze(0);
  const auto mask = at::tensor({0L, 0L, 0L, 1L, 1L}).unsqueeze(0);
  esft::ForwardOptions with_positions;
  with_positions.position_ids = (mask.cumsum(1) - 1).clamp_min(0);
  const auto right = model->forward(padded, mask, with_positions).logits.narrow(1, 3, 2);
  const auto wrong = model->forward(padded, mask, {}).logits.narrow(1, 3, 2);
  CHECK(test_support::max_diff(right, alone) < 1e-5);
  CHECK(test_support::max_diff(wrong, alone) > 1e-2);
}

TEST_CASE("generation: stop tokens end a row and are kept, on_token can end it, every row keeps its own limit") {
  auto t = load_tiny("qwen3_moe", "qwen3_moe");
  esft::GenerationRequest r;
  r.prompt = {5, 9, 13};
  r.max_new_tokens = 12;
  const auto free_run = greedy_alone(*t.model, r.prompt, 12);
  r.stop_ids = {free_run[3]};
  auto result = esft::generate_batch(*t.model, {r}, 0);
  const auto first_stop = std::find(free_run.begin(), free_run.end(), free_run[3]) - free_run.begin();
  CHECK(result[0].stopped);
  CHECK(result[0].tokens == std::vector<int64_t>(free_run.begin(), free_run.begin() + first_stop + 1));
  r.stop_ids.clear();
  result = esft::generate_batch(*t.model, {r, r}, 0, [](size_t i, int64_t) { return i == 1; });
  CHECK(result[0].tokens.size() == 1);  // ended by the caller after its first token
  CHECK(result[1].tokens == free_run);
  CHECK_FALSE(result[1].stopped);
}

TEST_CASE("generation: sampling is seeded per sequence and narrows as top-k, top-p and temperature say") {
  auto t = load_tiny("qwen3_moe", "qwen3_moe");
  esft::GenerationRequest r;
  r.prompt = {5, 9, 13};
  r.max_new_tokens = 16;
  r.sampling.temperature = 1.5;
  r.sampling.seed = 7;
  const auto a = esft::generate_batch(*t.model, {r}, 0)[0].tokens;
  CHECK(esft::generate_batch(*t.model, {r}, 0)[0].tokens == a);  // the same seed, the same tokens
  auto other = r;
  other.sampling.seed = 8;
  CHECK(esft::generate_batch(*t.model, {other}, 0)[0].tokens != a);
  const auto greedy = greedy_alone(*t.model, r.prompt, 16);
  CHECK(a != greedy);
  // Top-k 1 and a tiny top-p keep only the most likely token: greedy, whatever the temperature.
  auto k1 = r;
  k1.sampling.top_k = 1;
  CHECK(esft::generate_batch(*t.model, {k1}, 0)[0].tokens == greedy);
  auto p0 = r;
  p0.sampling.top_p = 1e-9;
  CHECK(esft::generate_batch(*t.model, {p0}, 0)[0].tokens == greedy);
}

TEST_CASE("sampling: the repetition penalty, top-k and top-p act on the logits as transformers' processors do") {
  auto gen = esft::make_sampling_generator(1);
  esft::SamplingSettings s;
  // CTRL's penalty: positive logits divided, negative ones multiplied, each seen token once.
  s.repetition_penalty = 2;
  CHECK(esft::choose_token(at::tensor({2.0f, -2.0f, 1.5f}), s, {0, 0, 1}, gen) == 2);  // 1.0, -4.0, 1.5
  s.repetition_penalty = 1;
  CHECK(esft::choose_token(at::tensor({2.0f, -2.0f, 1.5f}), s, {0}, gen) == 0);
  // Top-k 2 over 200 draws: only the two largest logits ever come out.
  s.temperature = 5;  // flat enough that a third token would show up without the limit
  s.top_k = 2;
  std::set<int64_t> drawn;
  const auto logits = at::tensor({0.1f, 3.0f, 0.2f, 2.9f, 0.0f});
  for (int i = 0; i < 200; ++i) drawn.insert(esft::choose_token(logits, s, {}, gen));
  CHECK(drawn == std::set<int64_t>{1, 3});
  // Top-p: probabilities 0.5, 0.3, 0.2 at temperature 1; top_p 0.75 keeps the first two (cumulative from the least
  // likely: 0.2 and 0.5 stay at or below 0.25 -> only 0.2 goes), top_p 0.45 keeps the first alone.
  s = {};
  s.temperature = 1;
  const auto probs = at::log(at::tensor({0.5f, 0.3f, 0.2f}));
  s.top_p = 0.75;
  drawn.clear();
  for (int i = 0; i < 300; ++i) drawn.insert(esft::choose_token(probs, s, {}, gen));
  CHECK(drawn == std::set<int64_t>{0, 1});
  s.top_p = 0.45;
  drawn.clear();
  for (int i = 0; i < 50; ++i) drawn.insert(esft::choose_token(probs, s, {}, gen));
  CHECK(drawn == std::set<int64_t>{0});
  // Temperature 1 without limits draws by the softmax: token 0 about half the time.
  s = {};
  s.temperature = 1;
  int zeros = 0;
  for (int i = 0; i < 2000; ++i) zeros += esft::choose_token(probs, s, {}, gen) == 0;
  CHECK(zeros > 900);
  CHECK(zeros < 1100);
  // Bad settings are refused with the setting's name.
  s.top_p = 0;
  CHECK(test_support::error_of([&] { s.validate(); }).find("top_p must be in (0, 1]") != std::string::npos);
}
