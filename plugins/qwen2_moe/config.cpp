#include "esft/error.h"
#include "esft/nn/decoder_config.h"
#include "qwen2_moe.h"

namespace qwen2_moe {

esft::nn::DecoderSpec decoder_spec(const esft::ModelConfig& c) {
  auto s = esft::nn::common_decoder_spec(c, "qwen2_moe");
  if (c.get<bool>("use_sliding_window", false)) {
    throw esft::Error("use_sliding_window is not supported by qwen2_moe (" + c.source + ")");
  }
  s.attention.qkv_bias = c.get<bool>("qkv_bias", true);  // transformers' Qwen2MoeConfig; o_proj never has a bias
  s.moe_layers = esft::nn::sparse_step_moe_layers(c);
  s.moe.experts.intermediate = c.require<int64_t>("moe_intermediate_size");
  // The shared expert, scaled by sigmoid(x W^T) of `shared_expert_gate`.
  s.moe.shared_intermediate = c.require<int64_t>("shared_expert_intermediate_size");
  if (s.moe.shared_intermediate <= 0) {
    throw esft::Error("shared_expert_intermediate_size must be positive (" + c.source + ")");
  }
  s.moe.shared_name = "shared_expert";
  s.moe.shared_expert_gate = true;
  return s;
}

}  // namespace qwen2_moe
