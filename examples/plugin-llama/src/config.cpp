// config.json -> the decoder: the SDK's dense decoder spec, plus what Llama configs may add (attention biases).
// Rotary scaling ("llama3", "yarn") is read by the SDK; a rope_type it does not implement is refused there.
#include "esft/error.h"
#include "esft/nn/decoder_config.h"
#include "llama.h"

namespace llama {

esft::nn::DecoderSpec decoder_spec(const esft::ModelConfig& c) {
  auto s = esft::nn::dense_decoder_spec(c, "llama");
  if (c.get<bool>("mlp_bias", false)) {
    throw esft::Error("mlp_bias is not supported by the llama plugin (" + c.source + ")");
  }
  // One flag for all four projections, as in transformers' LlamaAttention.
  s.attention.qkv_bias = c.get<bool>("attention_bias", false);
  s.attention.o_bias = s.attention.qkv_bias;
  return s;
}

}  // namespace llama
