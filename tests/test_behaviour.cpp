// Plan-B's model figures (pipeline/behaviour.h): rep-n and the embedding variance against hand-computed values,
// and measure_behaviour on a tinymoe model: exactly self-consistent without dropout or jitter, less with them,
// reproducible from its seed.
#include <ATen/ATen.h>
#include "doctest_torch.h"

#include "esft/error.h"
#include "esft/pipeline/behaviour.h"
#include "plugin_loader.h"

namespace {

std::shared_ptr<esft::MoECausalLM> tiny_model(double jitter, double dropout) {
  static esft::host::PluginLoader loader(std::vector<std::filesystem::path>{ESFT_BIN_DIR});
  const nlohmann::json config = {{"model_type", "tinymoe"}, {"vocab_size", 30},  {"hidden_size", 16},
                                 {"num_hidden_layers", 2},   {"num_attention_heads", 2},
                                 {"max_position_embeddings", 64}, {"num_experts", 4},
                                 {"capacity_factor", 1.0},  {"router_jitter", jitter}, {"dropout", dropout}};
  auto model = loader.load("tinymoe_boids")->create(esft::ModelConfig::from_json(config, "test"), at::kCPU, at::kFloat);
  at::manual_seed(5);
  at::NoGradGuard no_grad;
  for (auto& p : model->parameters()) p.normal_(0, 0.5);
  return model;
}

// Text-like rows: 3 rows of 12 tokens, the last with 4 padding positions.
std::vector<esft::data::Row> rows() {
  std::vector<esft::data::Row> out;
  for (int r = 0; r < 3; ++r) {
    esft::data::Row row;
    for (int t = 0; t < 12; ++t) {
      const bool pad = r == 2 && t >= 8;
      row.ids.push_back(pad ? 0 : (r * 7 + t * 3) % 30);
      row.labels.push_back(pad ? esft::data::kIgnoreIndex : row.ids.back());
      row.attention_mask.push_back(pad ? 0 : 1);
    }
    out.push_back(row);
  }
  return out;
}

std::vector<esft::data::Sample> samples() {
  std::vector<esft::data::Sample> out;
  for (const auto& r : rows()) out.push_back({r.ids, r.labels, "test"});
  return out;
}

esft::pipeline::BehaviourReport measure(esft::MoECausalLM& model, uint64_t seed = 0) {
  esft::pipeline::BehaviourOptions o;
  o.batch_size = 2;
  o.prompts = 2;
  o.prompt_tokens = 4;
  o.new_tokens = 10;
  o.seed = seed;
  return esft::pipeline::measure_behaviour(model, rows(), samples(), {}, 0, at::kCPU, o);
}

}  // namespace

TEST_CASE("behaviour: rep-n is 1 - distinct n-grams / n-grams") {
  const std::vector<int64_t> t = {1, 2, 1, 2, 1};
  CHECK(*esft::pipeline::ngram_repetition(t, 2) == doctest::Approx(0.5));        // 12 21 12 21
  CHECK(*esft::pipeline::ngram_repetition(t, 3) == doctest::Approx(1.0 / 3.0));  // 121 212 121
  CHECK(*esft::pipeline::ngram_repetition(t, 4) == doctest::Approx(0.0));        // 1212 2121
  CHECK(*esft::pipeline::ngram_repetition({7, 7, 7, 7}, 2) == doctest::Approx(2.0 / 3.0));
  CHECK_FALSE(esft::pipeline::ngram_repetition({1, 2}, 3).has_value());
}

TEST_CASE("behaviour: the embedding variance over batches equals the variance over all real tokens at once") {
  at::manual_seed(3);
  const auto a = at::randn({2, 5, 6}, at::kFloat), b = at::randn({1, 5, 6}, at::kFloat);
  const auto mask_a = at::ones({2, 5}, at::kLong), mask_b = at::tensor({1, 1, 0, 0, 0}, at::kLong).unsqueeze(0);
  esft::pipeline::VarianceAccumulator acc;
  CHECK_FALSE(acc.mean_variance().has_value());
  acc.add(a, mask_a);
  acc.add(b, mask_b);
  const auto all = at::cat({a.reshape({-1, 6}), b.reshape({-1, 6}).narrow(0, 0, 2)}).to(at::kDouble);
  const double expected = all.var(0, /*unbiased=*/false).mean().item<double>();
  CHECK(*acc.mean_variance() == doctest::Approx(expected).epsilon(1e-12));
}

TEST_CASE("behaviour: self-consistency is 1 without dropout or jitter, lower with them, and reproducible") {
  auto plain = tiny_model(0.0, 0.0);
  const auto r = measure(*plain);
  CHECK(*r.self_consistency == 1.0);
  CHECK(r.tokens == 32);
  CHECK(r.continuations == 2);
  CHECK(*r.embedding_variance > 0);
  CHECK(*r.routing.drop_fraction() >= 0);
  for (int n = 2; n <= 4; ++n) {
    CHECK(*r.repetition.at(n) >= 0);
    CHECK(*r.repetition.at(n) <= 1);
  }
  CHECK_FALSE(plain->is_training());  // left in eval mode

  auto noisy = tiny_model(1.0, 0.3);
  const auto n1 = measure(*noisy), n2 = measure(*noisy);
  CHECK(*n1.self_consistency < 1.0);
  CHECK(*n1.self_consistency == *n2.self_consistency);
  // Eval-mode figures ignore dropout and jitter: the same weights give the same variance and routing.
  CHECK(*n1.embedding_variance == doctest::Approx(*r.embedding_variance).epsilon(1e-12));
  CHECK(n1.routing.expert_pairs == r.routing.expert_pairs);
  const auto j = n1.to_json();
  for (const char* key : {"self_consistency", "embedding_variance", "utilisation_entropy_norm", "overuse_rate",
                          "drop_fraction", "repetition_2", "repetition_3", "repetition_4", "repetition"})
    CHECK_MESSAGE(j.contains(key), key);

  esft::pipeline::BehaviourOptions bad;
  bad.passes = 1;
  CHECK_THROWS_WITH_AS(esft::pipeline::measure_behaviour(*plain, rows(), samples(), {}, 0, at::kCPU, bad),
                       doctest::Contains("at least 2 passes"), esft::Error);
}
