#pragma once
// tinymoe: a small GPT trained from scratch to study routing (shared/spec/VARIANTS.md §2-3). Token and learned
// position embeddings, pre-LayerNorm blocks of causal multi-head attention and a SiLU FFN, where chosen blocks
// replace the FFN with Switch-routed experts (capacity, jitter). The family assembles its own blocks from core
// ones (LayerNorm, Attention without rotary positions, SwitchRouter, MoELayer), as GPT-style blocks do not fit
// DecoderSpec.
#include <memory>
#include <vector>

#include "esft/model/chat_format.h"
#include "esft/model/model_config.h"
#include "esft/model/moe_causal_lm.h"
#include "esft/model/param_naming.h"
#include "esft/nn/attention.h"
#include "esft/nn/block_stack.h"
#include "esft/nn/linear.h"
#include "esft/nn/moe_layer.h"
#include "esft/nn/switch_router.h"

namespace tinymoe {

// config.json of model_type "tinymoe", read and checked.
struct TinyMoESpec {
  int64_t vocab_size = 0, hidden = 0, layers = 0, heads = 0, ffn = 0, max_positions = 0;
  double norm_eps = 1e-5;
  bool tie_word_embeddings = true;
  std::vector<bool> moe_layers;  // per block: Switch MoE (true) or dense FFN
  esft::nn::SwitchRouterSpec router;
  double dropout = 0;  // in training mode: after the embeddings and on each block's attention and FFN/MoE output
};
// Throws esft::Error naming the key for values it cannot build (an unknown MoE placement, a capacity factor <= 0,
// top-k outside [1, E], ...). Keys: vocab_size, hidden_size, num_hidden_layers, num_attention_heads,
// intermediate_size (4 x hidden), max_position_embeddings, layer_norm_eps (1e-5), tie_word_embeddings (true),
// moe_layers ("all" | "none" | a block index | a list of them; "all"), num_experts, num_experts_per_tok (1),
// capacity_factor (absent = no limit), router_jitter (0), dropout (0, in [0, 1)). The load-balancing coefficient is a
// training setting (train's aux_loss_coef), not part of the model.
TinyMoESpec read_spec(const esft::ModelConfig& config);

const esft::ParamNaming& naming();
std::shared_ptr<const esft::ChatFormat> chat_format();

// fc2(silu(fc1(x))), with biases: the dense FFN.
class FeedForward : public torch::nn::Module {
 public:
  FeedForward(int64_t hidden, int64_t inner, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x) const;
  std::shared_ptr<esft::nn::Linear> fc1, fc2;
};

// h += attn(ln1(h)); h += ffn-or-moe(ln2(h)).
class Block : public esft::nn::DecoderBlock {
 public:
  Block(const TinyMoESpec& spec, int index, const at::TensorOptions& options);
  // Dropout (spec.dropout) applies while the module is training.
  at::Tensor forward(const at::Tensor& h, const esft::nn::BlockInputs& in) const override;
  void route(const at::Tensor& h, const esft::nn::BlockInputs& in) const override;
  esft::nn::MoELayer* moe_layer() const override { return moe.get(); }

  std::shared_ptr<esft::nn::LayerNorm> ln1, ln2;
  std::shared_ptr<esft::nn::Attention> attn;
  std::shared_ptr<FeedForward> ffn;          // dense blocks
  std::shared_ptr<esft::nn::MoELayer> moe;  // MoE blocks

 private:
  at::Tensor attend(const at::Tensor& h, const esft::nn::BlockInputs& in) const;
  at::Tensor drop(const at::Tensor& x) const;
  double dropout_;
};

// `wte`, `wpe`, `blocks.{i}`, `ln_f`, and `lm_head` unless tied to `wte`.
class TinyMoELM : public esft::MoECausalLM {
 public:
  TinyMoELM(esft::ModelConfig config, const TinyMoESpec& spec, const at::Device& device, at::ScalarType dtype);
  // aux_loss: the mean over MoE blocks of the Switch load-balancing loss (coefficient not applied).
  esft::ForwardOutput forward(const at::Tensor& input_ids, const at::Tensor& attention_mask,
                              const esft::ForwardOptions& options) override;
  std::vector<esft::nn::MoELayer*> moe_layers() override;
  at::Tensor output_embedding() const override;
  std::unique_ptr<esft::nn::KVCache> make_cache() const override;
  esft::CheckpointBindings checkpoint_bindings() override;
  const esft::ModelConfig& config() const override { return config_; }
  const TinyMoESpec& spec() const { return spec_; }

 private:
  esft::ModelConfig config_;
  TinyMoESpec spec_;
  std::shared_ptr<esft::nn::Embedding> wte_, wpe_;
  esft::nn::Blocks blocks_;
  std::shared_ptr<esft::nn::LayerNorm> ln_f_;
  std::shared_ptr<esft::nn::Linear> lm_head_;  // null when tied
};

}  // namespace tinymoe
