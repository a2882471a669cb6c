#include "esft/error.h"
#include "esft/nn/decoder_config.h"
#include "olmoe.h"

namespace olmoe {

using esft::Error;

esft::nn::DecoderSpec decoder_spec(const esft::ModelConfig& c) {
  auto s = esft::nn::common_decoder_spec(c, "olmoe");
  const double clip_qkv = c.get<double>("clip_qkv", 0.0);  // null or absent = off
  if (c.has("clip_qkv") && !(clip_qkv > 0)) throw Error("clip_qkv must be positive or null (" + c.source + ")");
  s.attention.qkv_bias = c.get<bool>("attention_bias", false);
  s.attention.o_bias = s.attention.qkv_bias;
  s.attention.qk_norm = esft::nn::QKNorm::Full;
  s.attention.clip_qkv = clip_qkv;
  s.moe.experts.intermediate = c.require<int64_t>("intermediate_size");  // olmoe's intermediate_size is the expert size
  return s;
}

}  // namespace olmoe
