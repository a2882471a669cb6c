#pragma once
// qwen3_moe (Qwen3-30B-A3B, Qwen3-Coder-30B-A3B): softmax top-k router with renormalisation, per-head q/k RMSNorm,
// no shared expert, no attention biases. Math: shared/spec/MODELS.md.
#include <memory>

#include "esft/model/chat_format.h"
#include "esft/model/model_config.h"
#include "esft/model/param_naming.h"
#include "esft/nn/decoder.h"

namespace qwen3_moe {

esft::nn::DecoderSpec decoder_spec(const esft::ModelConfig& config);  // config.cpp
const esft::ParamNaming& naming();                                   // naming.cpp
std::shared_ptr<const esft::ChatFormat> chat_format();               // chat_format.cpp

}  // namespace qwen3_moe
