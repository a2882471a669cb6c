#pragma once
// The llama family: Llama 2 and 3.x dense decoders (model_type "llama"), and a dense model as the shared blocks see
// it: every layer's MLP a SwiGLU, no MoE layer, so no routing and nothing for ESFT to select (full fine-tuning and
// LoRA train it; Select-MoE fine-tunes such a target on the data it selected). Built outside esft's tree against the
// installed SDK (find_package(esft)); see README.md.
#include <memory>

#include "esft/model/chat_format.h"
#include "esft/model/model_config.h"
#include "esft/model/param_naming.h"
#include "esft/nn/decoder.h"

namespace llama {

esft::nn::DecoderSpec decoder_spec(const esft::ModelConfig& config);  // config.cpp
const esft::ParamNaming& naming();                                   // naming.cpp
std::shared_ptr<const esft::ChatFormat> chat_format();               // chat_format.cpp

}  // namespace llama
