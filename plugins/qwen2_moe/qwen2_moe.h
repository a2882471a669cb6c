#pragma once
// qwen2_moe (Qwen1.5-MoE-A2.7B, Qwen2-57B-A14B): softmax top-k router (renormalisation per norm_topk_prob), q/k/v
// biases, no q/k norm, a shared expert scaled by a sigmoid gate, optional dense layers (mlp_only_layers,
// decoder_sparse_step). Math: shared/spec/MODELS.md.
#include <memory>

#include "esft/model/chat_format.h"
#include "esft/model/model_config.h"
#include "esft/model/param_naming.h"
#include "esft/nn/decoder.h"

namespace qwen2_moe {

esft::nn::DecoderSpec decoder_spec(const esft::ModelConfig& config);  // config.cpp
const esft::ParamNaming& naming();                                   // naming.cpp
std::shared_ptr<const esft::ChatFormat> chat_format();               // chat_format.cpp

}  // namespace qwen2_moe
