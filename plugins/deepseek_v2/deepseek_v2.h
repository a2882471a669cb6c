#pragma once
// deepseek_v2 (DeepSeek-V2, DeepSeek-V2-Lite, and the ESFT paper's ESFT-vanilla-lite): multi-head latent attention
// with interleaved rotary positions on its rope part (and YaRN with DeepSeek's mscale), a softmax router, greedy or
// group-limited, with routed_scaling_factor, shared experts, and dense layers before `first_k_dense_replace`.
// Math: shared/spec/MODELS.md. Its blocks do not fit DecoderSpec (the attention is another kind), so the family
// assembles them here from core blocks (LatentAttention, MoELayer, SwiGLU, RMSNorm) and runs them on the shared
// block stack, as llama.cpp's per-architecture graphs do.
#include <memory>
#include <vector>

#include "esft/model/chat_format.h"
#include "esft/model/model_config.h"
#include "esft/model/moe_causal_lm.h"
#include "esft/model/param_naming.h"
#include "esft/nn/block_stack.h"
#include "esft/nn/latent_attention.h"
#include "esft/nn/linear.h"
#include "esft/nn/moe_layer.h"
#include "esft/nn/rotary.h"

namespace deepseek_v2 {

struct DeepseekV2Spec {
  int64_t vocab_size = 0, hidden_size = 0;
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;
  esft::nn::LatentAttentionSpec attention;
  esft::nn::RopeSpec rope;           // over qk_rope_head_dim
  std::vector<bool> moe_layers;      // per decoder layer: MoE, or a dense SwiGLU of dense_intermediate
  int64_t dense_intermediate = 0;
  esft::nn::MoESpec moe;
};

// config.json of model_type "deepseek_v2", read and checked (config.cpp). Throws esft::Error naming key and file
// for what the family cannot build: a topk_method other than greedy / group_limited_greedy, a scoring_func other
// than softmax, a rope type other than default / yarn, num_key_value_heads unlike num_attention_heads, mlp_bias.
DeepseekV2Spec read_spec(const esft::ModelConfig& config);
const esft::ParamNaming& naming();                       // naming.cpp
std::shared_ptr<const esft::ChatFormat> chat_format();   // chat_format.cpp

// h += self_attn(input_layernorm(h)); h += mlp(post_attention_layernorm(h)), `mlp` a MoE layer or a dense SwiGLU.
class Layer : public esft::nn::DecoderBlock {
 public:
  Layer(const DeepseekV2Spec& spec, int index, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& h, const esft::nn::BlockInputs& in) const override;
  void route(const at::Tensor& h, const esft::nn::BlockInputs& in) const override;
  esft::nn::MoELayer* moe_layer() const override { return moe.get(); }

  std::shared_ptr<esft::nn::RMSNorm> input_layernorm, post_attention_layernorm;
  std::shared_ptr<esft::nn::LatentAttention> self_attn;
  std::shared_ptr<esft::nn::MoELayer> moe;   // MoE layers (registered as `mlp`)
  std::shared_ptr<esft::nn::SwiGLU> dense;   // dense layers (registered as `mlp`)

 private:
  at::Tensor attend(const at::Tensor& h, const esft::nn::BlockInputs& in) const;
};

// `model.embed_tokens`, `model.layers.{i}`, `model.norm`, as in Hugging Face.
class Body : public torch::nn::Module {
 public:
  Body(const DeepseekV2Spec& spec, const at::TensorOptions& options);
  std::shared_ptr<esft::nn::Embedding> embed_tokens;
  esft::nn::Blocks layers;
  std::shared_ptr<esft::nn::RMSNorm> norm;
};

// transformers 5.17 computes no load-balancing loss for deepseek_v2, so neither does this model (aux_loss stays
// undefined).
class DeepseekV2LM : public esft::MoECausalLM {
 public:
  DeepseekV2LM(esft::ModelConfig config, const DeepseekV2Spec& spec, const at::Device& device, at::ScalarType dtype);
  esft::ForwardOutput forward(const at::Tensor& input_ids, const at::Tensor& attention_mask,
                              const esft::ForwardOptions& options) override;
  std::vector<esft::nn::MoELayer*> moe_layers() override { return esft::nn::moe_layers_of(model_->layers); }
  at::Tensor output_embedding() const override { return lm_head_ ? lm_head_->weight : model_->embed_tokens->weight; }
  std::unique_ptr<esft::nn::KVCache> make_cache() const override;
  esft::CheckpointBindings checkpoint_bindings() override;
  const esft::ModelConfig& config() const override { return config_; }

 private:
  esft::ModelConfig config_;
  std::shared_ptr<Body> model_;
  std::shared_ptr<esft::nn::Linear> lm_head_;  // null when tied
  esft::nn::RotaryEmbedding rotary_;
};

}  // namespace deepseek_v2
