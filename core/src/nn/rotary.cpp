#include "esft/nn/rotary.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "esft/error.h"

namespace esft::nn {

namespace {

double number(const nlohmann::json& params, const char* key, double fallback, const ModelConfig& config) {
  if (!params.contains(key) || params.at(key).is_null()) return fallback;
  if (!params.at(key).is_number()) {
    throw Error(std::string("rope parameter '") + key + "' must be a number (" + config.source + ")");
  }
  return params.at(key).get<double>();
}

void read_yarn(const ModelConfig& config, RopeSpec& spec) {
  const auto& p = config.rope.parameters;
  YarnSpec y;
  y.original_max_position_embeddings =
      number(p, "original_max_position_embeddings", static_cast<double>(config.max_position_embeddings), config);
  if (y.original_max_position_embeddings <= 0) {
    throw Error("yarn rope needs original_max_position_embeddings or max_position_embeddings (" + config.source + ")");
  }
  // An absent factor is the ratio of the two context lengths (transformers does the same).
  y.factor = number(p, "factor", static_cast<double>(config.max_position_embeddings) / y.original_max_position_embeddings,
                    config);
  if (!(y.factor > 0)) throw Error("yarn rope factor must be positive (" + config.source + ")");
  // `or` semantics: 0 or null means the default, as in transformers.
  y.beta_fast = number(p, "beta_fast", 0, config);
  if (y.beta_fast == 0) y.beta_fast = 32;
  y.beta_slow = number(p, "beta_slow", 0, config);
  if (y.beta_slow == 0) y.beta_slow = 1;
  if (p.contains("truncate") && !p.at("truncate").is_null()) {
    if (!p.at("truncate").is_boolean()) throw Error("rope parameter 'truncate' must be a boolean (" + config.source + ")");
    y.truncate = p.at("truncate").get<bool>();
  }
  const double mscale = number(p, "mscale", 0, config), mscale_all_dim = number(p, "mscale_all_dim", 0, config);
  double attention = number(p, "attention_factor", -1, config);
  if (attention < 0) {
    attention = (mscale != 0 && mscale_all_dim != 0) ? yarn_mscale(y.factor, mscale) / yarn_mscale(y.factor, mscale_all_dim)
                                                     : yarn_mscale(y.factor, 1);
  }
  spec.attention_scaling = attention;
  spec.yarn = y;
}

void read_llama3(const ModelConfig& config, RopeSpec& spec) {
  const auto& p = config.rope.parameters;
  Llama3RopeSpec l;
  for (const char* key : {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"}) {
    if (!p.contains(key) || p.at(key).is_null())
      throw Error(std::string("llama3 rope needs '") + key + "' in rope_parameters / rope_scaling (" + config.source + ")");
  }
  l.factor = number(p, "factor", 0, config);
  l.low_freq_factor = number(p, "low_freq_factor", 0, config);
  l.high_freq_factor = number(p, "high_freq_factor", 0, config);
  l.original_max_position_embeddings = number(p, "original_max_position_embeddings", 0, config);
  if (!(l.factor > 0) || !(l.low_freq_factor > 0) || !(l.high_freq_factor > l.low_freq_factor) ||
      !(l.original_max_position_embeddings > 0)) {
    throw Error("llama3 rope needs factor > 0, high_freq_factor > low_freq_factor > 0 and a positive "
                "original_max_position_embeddings (" + config.source + ")");
  }
  spec.llama3 = l;
}

// Llama 3's rescaling of the default inverse frequencies, in float32 as transformers computes it.
at::Tensor llama3_inv_freq(const at::Tensor& inv_freq, const Llama3RopeSpec& l) {
  const double low_freq_wavelen = l.original_max_position_embeddings / l.low_freq_factor;
  const double high_freq_wavelen = l.original_max_position_embeddings / l.high_freq_factor;
  const auto wavelen = 2 * M_PI / inv_freq;
  auto scaled = at::where(wavelen > low_freq_wavelen, inv_freq / l.factor, inv_freq);
  const auto smooth =
      (l.original_max_position_embeddings / wavelen - l.low_freq_factor) / (l.high_freq_factor - l.low_freq_factor);
  const auto smoothed = (1 - smooth) * scaled / l.factor + smooth * scaled;
  const auto medium = (wavelen >= high_freq_wavelen).logical_and(wavelen <= low_freq_wavelen);
  return at::where(medium, smoothed, scaled);
}

}  // namespace

double yarn_mscale(double scale, double mscale) { return scale <= 1 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0; }

RopeSpec rope_spec_from_config(const ModelConfig& config, int64_t head_dim) {
  if (config.rope.type != "default" && config.rope.type != "yarn" && config.rope.type != "llama3") {
    throw Error("rope_type '" + config.rope.type + "' is not supported for model_type '" + config.model_type +
                "' (" + config.source + ")");
  }
  RopeSpec spec;
  spec.head_dim = head_dim;
  const double factor = config.rope.partial_rotary_factor;  // checked before the product becomes an integer
  spec.rotary_dim = factor > 0 && factor <= 1 ? static_cast<int64_t>(static_cast<double>(head_dim) * factor) : 0;
  if (spec.rotary_dim <= 0 || spec.rotary_dim > head_dim || spec.rotary_dim % 2 != 0) {
    throw Error("partial_rotary_factor " + std::to_string(config.rope.partial_rotary_factor) +
                " gives an invalid rotary dimension for head_dim " + std::to_string(head_dim) + " (" + config.source +
                ")");
  }
  spec.theta = config.rope.theta;
  if (config.rope.type == "yarn") read_yarn(config, spec);
  if (config.rope.type == "llama3") read_llama3(config, spec);
  const auto declared = config.get<std::string>("dtype", config.get<std::string>("torch_dtype", "float32"));
  if (declared == "bfloat16") spec.checkpoint_dtype = at::kBFloat16;
  if (declared == "float16") spec.checkpoint_dtype = at::kHalf;
  return spec;
}

at::Tensor rope_inv_freq(const RopeSpec& spec) {
  // Same op sequence as transformers, in float32: base^(arange(0, d, 2) / d), then 1 / that.
  const double d = static_cast<double>(spec.rotary_dim);
  auto pos_freqs = at::pow(spec.theta, at::arange(0, spec.rotary_dim, 2, at::kLong).to(at::kFloat) / d);
  if (spec.llama3) return llama3_inv_freq(pos_freqs.reciprocal(), *spec.llama3);
  if (!spec.yarn) return pos_freqs.reciprocal();
  const auto& y = *spec.yarn;
  auto extrapolation = pos_freqs.reciprocal();
  auto interpolation = (pos_freqs * y.factor).reciprocal();
  auto correction_dim = [&](double rotations) {
    return d * std::log(y.original_max_position_embeddings / (rotations * 2 * M_PI)) / (2 * std::log(spec.theta));
  };
  double low = correction_dim(y.beta_fast), high = correction_dim(y.beta_slow);
  if (y.truncate) low = std::floor(low), high = std::ceil(high);
  low = std::max(low, 0.0);
  high = std::min(high, d - 1);
  if (low == high) high += 0.001;  // avoids a zero-width ramp, as transformers does
  auto ramp = ((at::arange(spec.rotary_dim / 2, at::kFloat) - low) / (high - low)).clamp(0, 1);
  auto extrapolation_factor = 1 - ramp;
  return interpolation * (1 - extrapolation_factor) + extrapolation * extrapolation_factor;
}

RotaryEmbedding::RotaryEmbedding(const RopeSpec& spec, const at::Device& device, at::ScalarType model_dtype)
    : spec_(spec) {
  auto inv_freq = rope_inv_freq(spec);
  for (auto dtype : {spec.checkpoint_dtype, model_dtype}) {
    if (dtype == at::kBFloat16 || dtype == at::kHalf) inv_freq = inv_freq.to(dtype).to(at::kFloat);
  }
  inv_freq_ = inv_freq.to(device);
}

std::pair<at::Tensor, at::Tensor> RotaryEmbedding::cos_sin(const at::Tensor& positions, at::ScalarType dtype) const {
  // Layers spread over several devices run the family's rotary where the inputs are, which may not be where the
  // model was built.
  const auto& inv_freq = inv_freq_.device() == positions.device() ? inv_freq_ : inv_freq_.to(positions.device());
  auto freqs = positions.to(at::kFloat).unsqueeze(-1) * inv_freq;  // [B, T, d/2]
  auto emb = at::cat({freqs, freqs}, -1);
  auto cos = emb.cos();
  auto sin = emb.sin();
  if (spec_.attention_scaling != 1.0) {
    cos = cos * spec_.attention_scaling;
    sin = sin * spec_.attention_scaling;
  }
  return {cos.to(dtype), sin.to(dtype)};
}

static at::Tensor rotate_half(const at::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

at::Tensor apply_rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  if (!cos.defined()) return x;  // no rotary positions (learned position embeddings: tinymoe)
  auto c = cos.unsqueeze(1);
  auto s = sin.unsqueeze(1);
  const int64_t rotary_dim = c.size(-1);
  if (rotary_dim == x.size(-1)) return x * c + rotate_half(x) * s;
  auto rot = x.narrow(-1, 0, rotary_dim);
  auto pass = x.narrow(-1, rotary_dim, x.size(-1) - rotary_dim);
  return at::cat({rot * c + rotate_half(rot) * s, pass}, -1);
}

at::Tensor apply_rotary_interleaved(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  auto c = cos.narrow(-1, 0, half).unsqueeze(1).to(at::kFloat);  // [B, 1, T, d/2]
  auto s = sin.narrow(-1, 0, half).unsqueeze(1).to(at::kFloat);
  auto pairs = x.to(at::kFloat).unflatten(-1, {half, 2});
  auto re = pairs.select(-1, 0), im = pairs.select(-1, 1);
  return at::stack({re * c - im * s, re * s + im * c}, -1).flatten(-2).to(x.scalar_type());
}

}  // namespace esft::nn
