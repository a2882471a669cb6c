#include "esft/error.h"
#include "esft/model/trash_constraint.h"
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
  if (c.model_type == "select_moe") {  // num_experts real experts, then the router's trash-can columns
    const int64_t trash = c.get<int64_t>("num_trash_experts", 0);
    if (trash < 1 || trash > (int64_t{1} << 20)) {
      throw Error("select_moe needs num_trash_experts >= 1, not " + std::to_string(trash) + " (" + c.source + ")");
    }
    s.moe.router.num_experts = c.num_experts + trash;
    s.moe.trash_experts = trash;
    esft::TrashConstraint::from_config(c);  // its settings are checked where the model is
  }
  return s;
}

}  // namespace olmoe
