#pragma once
// glm4_moe (GLM-4.5, GLM-4.5-Air): dense layers below first_k_dense_replace, then MoE layers with a sigmoid,
// group-limited router (e_score_correction_bias chooses, unbiased scores weigh, routed_scaling_factor scales) and
// always-on shared experts; q/k/v biases, optional per-head q/k norm, partial rotary embeddings. The checkpoints'
// next-token-prediction layers (num_nextn_predict_layers of them after the decoder layers) are skipped. No
// load-balancing loss. Math: shared/spec/MODELS.md.
#include <memory>

#include "esft/model/chat_format.h"
#include "esft/model/model_config.h"
#include "esft/model/param_naming.h"
#include "esft/nn/decoder.h"

namespace glm4_moe {

esft::nn::DecoderSpec decoder_spec(const esft::ModelConfig& config);  // config.cpp
const esft::ParamNaming& naming();                                   // naming.cpp
std::shared_ptr<const esft::ChatFormat> chat_format();               // chat_format.cpp

}  // namespace glm4_moe
