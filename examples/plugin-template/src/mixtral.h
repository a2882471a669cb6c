#pragma once
// The template family: Mixtral (model_type "mixtral", Mixtral-8x7B and -8x22B). A MoE decoder of the shared blocks:
// softmax over all experts, top-k, weights renormalised; no shared expert; transformers' load-balancing loss.
// To start your own family, copy this folder and rename `mixtral` everywhere (see README.md).
#include <memory>

#include "esft/model/chat_format.h"
#include "esft/model/model_config.h"
#include "esft/model/param_naming.h"
#include "esft/nn/decoder.h"

namespace mixtral {

esft::nn::DecoderSpec decoder_spec(const esft::ModelConfig& config);  // config.cpp: config.json -> the model
const esft::ParamNaming& naming();                                   // naming.cpp: checkpoint tensor names
std::shared_ptr<const esft::ChatFormat> chat_format();               // chat_format.cpp: conversations -> text

}  // namespace mixtral
