#include "esft/error.h"
#include "esft/nn/decoder_config.h"
#include "qwen3_moe.h"

namespace qwen3_moe {

esft::nn::DecoderSpec decoder_spec(const esft::ModelConfig& c) {
  auto s = esft::nn::common_decoder_spec(c, "qwen3_moe");
  if (c.get<bool>("use_sliding_window", false)) {
    throw esft::Error("use_sliding_window is not supported by qwen3_moe (" + c.source + ")");
  }
  s.attention.qkv_bias = c.get<bool>("attention_bias", false);
  s.attention.o_bias = s.attention.qkv_bias;
  s.attention.qk_norm = esft::nn::QKNorm::PerHead;
  s.moe_layers = esft::nn::sparse_step_moe_layers(c);
  s.moe.experts.intermediate = c.require<int64_t>("moe_intermediate_size");
  return s;
}

}  // namespace qwen3_moe
