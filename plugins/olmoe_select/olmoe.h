#pragma once
// olmoe (OLMoE-1B-7B-0125, the base of Select-MoE): every layer MoE, softmax top-k router, no shared expert,
// q/k RMSNorm over the whole projection width before the head reshape, optional clip_qkv. Math:
// shared/spec/MODELS.md. model_type "select_moe" is Select-MoE's variant (shared/spec/VARIANTS.md §1): the router has
// num_trash_experts more columns than there are experts, trash cans that add nothing when chosen.
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
