#include "esft/error.h"
#include "esft/nn/decoder_config.h"
#include "gpt_oss.h"

namespace gpt_oss {

namespace {

// layer_types as GptOssConfig defaults it: even layers sliding, odd layers full.
std::vector<int64_t> sliding_windows(const esft::ModelConfig& c) {
  const int64_t window = c.require<int64_t>("sliding_window");
  if (window <= 0) throw esft::Error("sliding_window must be positive (" + c.source + ")");
  std::vector<std::string> types;
  if (c.has("layer_types")) {
    types = c.get<std::vector<std::string>>("layer_types", {});
  } else {
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) types.push_back(i % 2 == 0 ? "sliding_attention" : "full_attention");
  }
  if (static_cast<int64_t>(types.size()) != c.num_hidden_layers) {
    throw esft::Error("layer_types has " + std::to_string(types.size()) + " entries for " +
                      std::to_string(c.num_hidden_layers) + " layers (" + c.source + ")");
  }
  std::vector<int64_t> windows;
  for (const auto& t : types) {
    if (t == "sliding_attention") {
      windows.push_back(window);
    } else if (t == "full_attention") {
      windows.push_back(0);
    } else {
      throw esft::Error("layer type '" + t + "' is not supported by gpt_oss (" + c.source + ")");
    }
  }
  return windows;
}

}  // namespace

esft::nn::DecoderSpec decoder_spec(const esft::ModelConfig& c) {
  auto s = esft::nn::common_decoder_spec(c, "gpt_oss");
  s.attention.qkv_bias = c.get<bool>("attention_bias", true);
  s.attention.o_bias = s.attention.qkv_bias;
  s.attention.sinks = true;
  s.sliding_windows = sliding_windows(c);
  s.norm_scale_in_float32 = true;

  s.moe.router_name = "router";
  s.moe.router.scoring = esft::nn::RouterScoring::TopKThenSoftmax;
  s.moe.router.bias = true;
  auto& experts = s.moe.experts;
  experts.intermediate = c.require<int64_t>("intermediate_size");  // gpt-oss' intermediate_size is the expert size
  experts.bias = true;
  experts.layout = esft::nn::ExpertCheckpointLayout::FusedInterleaved;
  experts.activation = esft::nn::ExpertActivation::ClampedSwiGLU;
  experts.swiglu_limit = c.get<double>("swiglu_limit", 7.0);
  experts.swiglu_alpha = 1.702;  // fixed in transformers' GptOssExperts
  return s;
}

}  // namespace gpt_oss
