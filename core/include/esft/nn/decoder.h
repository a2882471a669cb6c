#pragma once
// The pre-norm decoder every supported family is built from:
//   h = embed(ids); per layer: h += Attn(RMSNorm(h)); h += MLP(RMSNorm(h)); logits = lm_head(RMSNorm(h)),
// where each layer's MLP is either a dense SwiGLU or the shared MoELayer. A family plugin fills a DecoderSpec from
// its config and hands it to DecoderLM, so plugins stay thin assemblies of core blocks. A family whose blocks do not
// fit (GPT-style blocks, multi-head latent attention) assembles its own DecoderBlocks and runs them with the same
// block stack (block_stack.h).
#include <memory>
#include <vector>

#include "esft/model/model_config.h"
#include "esft/model/moe_causal_lm.h"
#include "esft/model/param_naming.h"
#include "esft/nn/attention.h"
#include "esft/nn/block_stack.h"
#include "esft/nn/linear.h"
#include "esft/nn/moe_layer.h"
#include "esft/nn/rotary.h"

namespace esft::nn {

struct DecoderSpec {
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;
  AttentionSpec attention;
  RopeSpec rope;
  std::vector<bool> moe_layers;  // one entry per decoder layer: MoE (true) or dense SwiGLU (false)
  // Sliding-window size per decoder layer (0 = full attention); empty = every layer full (gpt-oss alternates).
  std::vector<int64_t> sliding_windows;
  int64_t dense_intermediate = 0;
  MoESpec moe;
  // Module name of an MoE layer's block, so checkpoint names follow (`mlp`; Mixtral's checkpoints: `block_sparse_moe`).
  std::string moe_block_name = "mlp";
  bool norm_scale_in_float32 = false;  // RMSNorm multiplies by its weight before casting back (gpt-oss)
  bool load_balancing_loss = true;     // transformers computes one for this family (glm4_moe has none)
  // The checkpoint holds this many layers after the decoder layers (glm4_moe's next-token-prediction layers,
  // `num_nextn_predict_layers`); their tensors are skipped, not errors. Tensors of any later layer still are.
  int64_t skipped_checkpoint_layers = 0;
};

class DecoderLayer : public DecoderBlock {
 public:
  DecoderLayer(const DecoderSpec& spec, int layer, const ParamNaming& naming, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& h, const BlockInputs& in) const override;
  void route(const at::Tensor& h, const BlockInputs& in) const override;
  MoELayer* moe_layer() const override { return moe.get(); }

  std::shared_ptr<RMSNorm> input_layernorm, post_attention_layernorm;
  std::shared_ptr<Attention> self_attn;
  std::shared_ptr<MoELayer> moe;     // set for MoE layers (registered as spec.moe_block_name, `mlp`)
  std::shared_ptr<SwiGLU> dense;     // set for dense layers (registered as `mlp`)

 private:
  // h plus the attention of the normed h: the residual stream after attention.
  at::Tensor attend(const at::Tensor& h, const BlockInputs& in) const;

  int64_t sliding_window_ = 0;
};

// `model.embed_tokens`, `model.layers.{i}`, `model.norm` and `lm_head`, as in Hugging Face.
class DecoderBody : public torch::nn::Module {
 public:
  DecoderBody(const DecoderSpec& spec, const ParamNaming& naming, const at::TensorOptions& options);

  std::shared_ptr<Embedding> embed_tokens;
  Blocks layers;
  std::shared_ptr<RMSNorm> norm;
};

class DecoderLM : public MoECausalLM {
 public:
  DecoderLM(ModelConfig config, const DecoderSpec& spec, const ParamNaming& naming, const at::Device& device,
            at::ScalarType dtype);

  ForwardOutput forward(const at::Tensor& input_ids, const at::Tensor& attention_mask,
                        const ForwardOptions& options) override;
  std::vector<MoELayer*> moe_layers() override;
  at::Tensor output_embedding() const override { return lm_head_ ? lm_head_->weight : model_->embed_tokens->weight; }
  std::unique_ptr<KVCache> make_cache() const override;
  CheckpointBindings checkpoint_bindings() override;
  bool skips_checkpoint_key(const std::string& key) const override;
  const ModelConfig& config() const override { return config_; }

 private:
  ModelConfig config_;
  DecoderSpec spec_;
  std::shared_ptr<DecoderBody> model_;
  std::shared_ptr<Linear> lm_head_;
  RotaryEmbedding rotary_;
};

}  // namespace esft::nn
