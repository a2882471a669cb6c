// deepseek_v2's layers and model, assembled from core blocks.
#include <ATen/ATen.h>

#include "deepseek_v2.h"
#include "esft/model/model_family.h"
#include "esft/nn/expert_bank.h"

namespace deepseek_v2 {

Layer::Layer(const DeepseekV2Spec& spec, int index, const at::TensorOptions& options) {
  const int64_t H = spec.hidden_size;
  self_attn = register_module("self_attn", std::make_shared<esft::nn::LatentAttention>(spec.attention, index, options));
  if (spec.moe_layers.at(static_cast<size_t>(index))) {
    moe = register_module("mlp", std::make_shared<esft::nn::MoELayer>(spec.moe, H, index, naming(), options));
  } else {
    dense = register_module("mlp", std::make_shared<esft::nn::SwiGLU>(H, spec.dense_intermediate, options));
  }
  input_layernorm = register_module("input_layernorm", std::make_shared<esft::nn::RMSNorm>(H, spec.rms_norm_eps, options));
  post_attention_layernorm =
      register_module("post_attention_layernorm", std::make_shared<esft::nn::RMSNorm>(H, spec.rms_norm_eps, options));
}

at::Tensor Layer::attend(const at::Tensor& h, const esft::nn::BlockInputs& in) const {
  return h + self_attn->forward(input_layernorm->forward(h), in.cos, in.sin, in.attention_bias(), in.cache);
}

at::Tensor Layer::forward(const at::Tensor& h, const esft::nn::BlockInputs& in) const {
  const auto x = attend(h, in);
  const auto normed = post_attention_layernorm->forward(x);
  return x + (moe ? moe->forward(normed, in.routing) : dense->forward(normed));
}

void Layer::route(const at::Tensor& h, const esft::nn::BlockInputs& in) const {
  moe->route(post_attention_layernorm->forward(attend(h, in)), in.routing);
}

Body::Body(const DeepseekV2Spec& spec, const at::TensorOptions& options) {
  embed_tokens =
      register_module("embed_tokens", std::make_shared<esft::nn::Embedding>(spec.vocab_size, spec.hidden_size, options));
  for (int i = 0; i < static_cast<int>(spec.moe_layers.size()); ++i) {
    layers.push_back(std::make_shared<Layer>(spec, i, options));
  }
  esft::nn::register_blocks(*this, "layers", layers);
  norm = register_module("norm", std::make_shared<esft::nn::RMSNorm>(spec.hidden_size, spec.rms_norm_eps, options));
}

DeepseekV2LM::DeepseekV2LM(esft::ModelConfig config, const DeepseekV2Spec& spec, const at::Device& device,
                           at::ScalarType dtype)
    : config_(std::move(config)), rotary_(spec.rope, device, dtype) {
  const auto options = at::TensorOptions().device(device).dtype(dtype);
  model_ = register_module("model", std::make_shared<Body>(spec, options));
  if (!spec.tie_word_embeddings) {
    lm_head_ = register_module("lm_head",
                               std::make_shared<esft::nn::Linear>(spec.hidden_size, spec.vocab_size, false, options));
  }
}

esft::ForwardOutput DeepseekV2LM::forward(const at::Tensor& input_ids, const at::Tensor& attention_mask,
                                          const esft::ForwardOptions& options) {
  esft::nn::BlockInputs in(input_ids, attention_mask, options.cache, model_->norm->weight.scalar_type(), options.hooks,
                           options.position_ids);
  // float32 tables: transformers keeps the rotation (freqs_cis) in float32 whatever the model's dtype.
  std::tie(in.cos, in.sin) = rotary_.cos_sin(in.positions(), at::kFloat);
  esft::ForwardOutput out;
  auto h = esft::nn::run_blocks(model_->layers, model_->embed_tokens->forward(input_ids), in, options, out);
  if (options.routing_only) return {};
  esft::nn::finish_forward(model_->norm->forward(h), output_embedding(), options, out);
  return out;
}

std::unique_ptr<esft::nn::KVCache> DeepseekV2LM::make_cache() const {
  return std::make_unique<esft::nn::KVCache>(static_cast<int64_t>(model_->layers.size()));
}

esft::CheckpointBindings DeepseekV2LM::checkpoint_bindings() { return esft::nn::bindings_with_expert_banks(*this); }

std::shared_ptr<esft::ModelFamily> make_family() {
  return std::make_shared<esft::FactoryFamily>(
      "deepseek_v2", std::vector<std::string>{"deepseek_v2"}, naming(), chat_format(),
      [](const esft::ModelConfig& config, const c10::Device& device, c10::ScalarType dtype) {
        return std::make_shared<DeepseekV2LM>(config, read_spec(config), device, dtype);
      });
}

}  // namespace deepseek_v2
