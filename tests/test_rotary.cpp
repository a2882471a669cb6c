// Rotary frequencies: the default ones, YaRN's (with and without truncation, with and without mscale) and Llama
// 3's, against the formulas of shared/spec/MODELS.md and transformers, evaluated in double precision.
#include <ATen/ATen.h>
#include "doctest_torch.h"

#include <cmath>

#include "esft/error.h"
#include "esft/model/model_config.h"
#include "esft/nn/rotary.h"

namespace {

using json = nlohmann::json;

esft::ModelConfig config_with_rope(const json& rope) {
  json raw = {{"model_type", "test"},        {"hidden_size", 256},           {"num_attention_heads", 4},
              {"head_dim", 64},              {"max_position_embeddings", 131072}, {"rope_parameters", rope}};
  return esft::ModelConfig::from_json(raw, "test/config.json");
}

// YaRN's inverse frequencies in double.
std::vector<double> yarn_reference(double base, double d, double factor, double original, double beta_fast,
                                   double beta_slow, bool truncate) {
  auto corr = [&](double r) { return d * std::log(original / (r * 2 * M_PI)) / (2 * std::log(base)); };
  double low = corr(beta_fast), high = corr(beta_slow);
  if (truncate) low = std::floor(low), high = std::ceil(high);
  low = std::max(low, 0.0), high = std::min(high, d - 1);
  std::vector<double> out;
  for (int i = 0; i < d / 2; ++i) {
    const double pos = std::pow(base, 2.0 * i / d);
    const double ramp = std::min(1.0, std::max(0.0, (i - low) / (high - low)));
    out.push_back((1 / (factor * pos)) * ramp + (1 / pos) * (1 - ramp));
  }
  return out;
}

double worst_relative(const at::Tensor& ours, const std::vector<double>& ref) {
  double worst = 0;
  for (size_t i = 0; i < ref.size(); ++i)
    worst = std::max(worst, std::abs(ours[static_cast<int64_t>(i)].item<double>() - ref[i]) / ref[i]);
  return worst;
}

}  // namespace

TEST_CASE("rotary: default frequencies") {
  auto spec = esft::nn::rope_spec_from_config(config_with_rope({{"rope_type", "default"}, {"rope_theta", 1e6}}), 64);
  CHECK(spec.attention_scaling == 1.0);
  CHECK_FALSE(spec.yarn.has_value());
  std::vector<double> ref;
  for (int i = 0; i < 32; ++i) ref.push_back(1 / std::pow(1e6, 2.0 * i / 64));
  CHECK(worst_relative(esft::nn::rope_inv_freq(spec), ref) <= 1e-6);
}

TEST_CASE("rotary: YaRN as gpt-oss configures it (no truncation)") {
  auto spec = esft::nn::rope_spec_from_config(
      config_with_rope({{"rope_type", "yarn"}, {"rope_theta", 150000.0}, {"factor", 32.0}, {"beta_fast", 32.0},
                        {"beta_slow", 1.0}, {"original_max_position_embeddings", 4096}, {"truncate", false}}),
      64);
  REQUIRE(spec.yarn.has_value());
  CHECK(spec.attention_scaling == doctest::Approx(0.1 * std::log(32.0) + 1).epsilon(1e-12));
  CHECK(worst_relative(esft::nn::rope_inv_freq(spec), yarn_reference(150000, 64, 32, 4096, 32, 1, false)) <= 1e-6);
}

TEST_CASE("rotary: YaRN with the default truncation, defaults for betas, and mscale") {
  auto spec = esft::nn::rope_spec_from_config(
      config_with_rope({{"rope_type", "yarn"}, {"rope_theta", 10000.0}, {"factor", 40.0},
                        {"original_max_position_embeddings", 4096}, {"mscale", 1.0}, {"mscale_all_dim", 0.707}}),
      64);
  auto mscale = [](double s, double m) { return 0.1 * m * std::log(s) + 1; };
  CHECK(spec.attention_scaling == doctest::Approx(mscale(40, 1.0) / mscale(40, 0.707)).epsilon(1e-12));
  CHECK(worst_relative(esft::nn::rope_inv_freq(spec), yarn_reference(10000, 64, 40, 4096, 32, 1, true)) <= 1e-6);
}

TEST_CASE("rotary: a missing YaRN factor is the ratio of the context lengths") {
  auto spec = esft::nn::rope_spec_from_config(
      config_with_rope({{"rope_type", "yarn"}, {"original_max_position_embeddings", 4096}}), 64);
  CHECK(spec.yarn->factor == 32.0);
}

TEST_CASE("rotary: Llama 3.1's frequency scaling, as Llama-3.1-8B configures it") {
  auto spec = esft::nn::rope_spec_from_config(
      config_with_rope({{"rope_type", "llama3"}, {"rope_theta", 500000.0}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                        {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}}),
      128);
  REQUIRE(spec.llama3.has_value());
  CHECK(spec.attention_scaling == 1.0);
  // Wavelengths above 8192 divide by 8, below 2048 stay, and in between blend by (8192 / wavelength - 1) / 3.
  std::vector<double> ref;
  int kept = 0, divided = 0, blended = 0;
  for (int i = 0; i < 64; ++i) {
    const double f = 1 / std::pow(500000.0, 2.0 * i / 128), wavelength = 2 * M_PI / f;
    if (wavelength < 2048) ref.push_back(f), ++kept;
    else if (wavelength > 8192) ref.push_back(f / 8), ++divided;
    else {
      const double smooth = (8192 / wavelength - 1) / 3;
      ref.push_back((1 - smooth) * f / 8 + smooth * f), ++blended;
    }
  }
  CHECK(kept > 0);
  CHECK(divided > 0);
  CHECK(blended > 0);
  CHECK(worst_relative(esft::nn::rope_inv_freq(spec), ref) <= 1e-6);
}

TEST_CASE("rotary: llama3 scaling without its parameters is refused, naming the missing one") {
  CHECK_THROWS_WITH_AS(
      esft::nn::rope_spec_from_config(config_with_rope({{"rope_type", "llama3"}, {"factor", 8.0}}), 64),
      doctest::Contains("llama3 rope needs 'low_freq_factor'"), esft::Error);
  CHECK_THROWS_WITH_AS(esft::nn::rope_spec_from_config(
                           config_with_rope({{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 4.0},
                                             {"high_freq_factor", 1.0}, {"original_max_position_embeddings", 8192}}),
                           64),
                       doctest::Contains("high_freq_factor > low_freq_factor"), esft::Error);
}

TEST_CASE("rotary: the interleaved form rotates adjacent channel pairs, as a complex multiplication") {
  at::manual_seed(3);
  auto spec = esft::nn::rope_spec_from_config(config_with_rope({{"rope_type", "default"}, {"rope_theta", 10000.0}}), 8);
  const esft::nn::RotaryEmbedding rope(spec, at::kCPU, at::kFloat);
  const auto positions = at::arange(5, at::kLong).unsqueeze(0);
  auto [cos, sin] = rope.cos_sin(positions, at::kFloat);
  const auto x = at::randn({1, 3, 5, 8});
  // DeepSeek-V2 in transformers: view_as_complex over channel pairs times exp(i * position * inv_freq).
  const auto angles = positions.to(at::kFloat).unsqueeze(-1) * esft::nn::rope_inv_freq(spec);  // [1, 5, 4]
  const auto turn = at::polar(at::ones_like(angles), angles).unsqueeze(1);
  const auto expected = at::view_as_real(at::view_as_complex(x.reshape({1, 3, 5, 4, 2}).contiguous()) * turn).flatten(3);
  CHECK(at::allclose(esft::nn::apply_rotary_interleaved(x, cos, sin), expected, 1e-6, 1e-6));
  // Not the rotate_half form: the two differ on every position but the first.
  CHECK_FALSE(at::allclose(esft::nn::apply_rotary(x, cos, sin), expected, 1e-3, 1e-3));
}
