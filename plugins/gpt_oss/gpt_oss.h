#pragma once
// gpt_oss (gpt-oss-20b, gpt-oss-120b): biases on every attention projection, learned attention sinks, sliding-
// window layers alternating with full ones (layer_types), YaRN rotary scaling, a router that softmaxes the top-k
// raw logits, and fused experts with biases and the clamped SwiGLU, stored interleaved in the checkpoint (MXFP4
// in the released ones, dequantized on load). Math: shared/spec/MODELS.md.
#include <memory>

#include "esft/model/chat_format.h"
#include "esft/model/model_config.h"
#include "esft/model/param_naming.h"
#include "esft/nn/decoder.h"

namespace gpt_oss {

esft::nn::DecoderSpec decoder_spec(const esft::ModelConfig& config);  // config.cpp
const esft::ParamNaming& naming();                                   // naming.cpp
std::shared_ptr<const esft::ChatFormat> chat_format();               // chat_format.cpp

}  // namespace gpt_oss
