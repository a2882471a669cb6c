#pragma once
// olmoe (OLMoE-1B-7B-0125, the base of Select-MoE): every layer MoE, softmax top-k router, no shared expert,
// q/k RMSNorm over the whole projection width before the head reshape, optional clip_qkv. Math:
// shared/spec/MODELS.md. This folder will also host the Select-MoE variant, hence the olmoe_select plugin name.
#include <memory>

#include "esft/model/chat_format.h"
#include "esft/model/model_config.h"
#include "esft/model/param_naming.h"
#include "esft/nn/decoder.h"

namespace olmoe {

esft::nn::DecoderSpec decoder_spec(const esft::ModelConfig& config);  // config.cpp
const esft::ParamNaming& naming();                                   // naming.cpp
std::shared_ptr<const esft::ChatFormat> chat_format();               // chat_format.cpp

}  // namespace olmoe
