// config.json -> DecoderSpec. common_decoder_spec reads what every MoE decoder shares (sizes, norms, attention,
// rotary embedding, a softmax-then-top-k router); a family states only what differs, and refuses, with the key and
// the file, what it does not implement.
#include "esft/error.h"
#include "esft/nn/decoder_config.h"
#include "mixtral.h"

namespace mixtral {

esft::nn::DecoderSpec decoder_spec(const esft::ModelConfig& c) {
  auto s = esft::nn::common_decoder_spec(c, "mixtral");
  if (!c.get<nlohmann::json>("sliding_window", nullptr).is_null()) {
    throw esft::Error("sliding_window is not supported by the mixtral plugin (" + c.source + ")");
  }
  s.moe_block_name = "block_sparse_moe";                          // checkpoints name the MoE block so
  s.moe.router.norm_topk_prob = true;                             // Mixtral always renormalises its top-k weights
  s.moe.experts.intermediate = c.require<int64_t>("intermediate_size");  // the experts' width (no dense layers)
  return s;
}

}  // namespace mixtral
