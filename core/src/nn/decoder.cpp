#include "esft/nn/decoder.h"

#include <ATen/ATen.h>

#include <cctype>

#include "esft/model/losses.h"
#include "esft/nn/decoder_config.h"

namespace esft::nn {

DecoderLayer::DecoderLayer(const DecoderSpec& spec, int layer, const ParamNaming& naming,
                           const at::TensorOptions& options) {
  const int64_t H = spec.hidden_size;
  if (!spec.sliding_windows.empty()) sliding_window_ = spec.sliding_windows.at(layer);
  self_attn = register_module("self_attn", std::make_shared<Attention>(spec.attention, layer, options));
  if (spec.moe_layers.at(layer)) {
    moe = register_module(spec.moe_block_name, std::make_shared<MoELayer>(spec.moe, H, layer, naming, options));
  } else {
    dense = register_module("mlp", std::make_shared<SwiGLU>(H, spec.dense_intermediate, options));
  }
  const bool f32 = spec.norm_scale_in_float32;
  input_layernorm = register_module("input_layernorm", std::make_shared<RMSNorm>(H, spec.rms_norm_eps, options, f32));
  post_attention_layernorm =
      register_module("post_attention_layernorm", std::make_shared<RMSNorm>(H, spec.rms_norm_eps, options, f32));
}

at::Tensor DecoderLayer::attend(const at::Tensor& h, const BlockInputs& in) const {
  return h + self_attn->forward(input_layernorm->forward(h), in.cos, in.sin, in.attention_bias(sliding_window_),
                                in.cache);
}

at::Tensor DecoderLayer::forward(const at::Tensor& h, const BlockInputs& in) const {
  auto x = attend(h, in);
  auto normed = post_attention_layernorm->forward(x);
  return x + (moe ? moe->forward(normed, in.routing) : dense->forward(normed));
}

void DecoderLayer::route(const at::Tensor& h, const BlockInputs& in) const {
  moe->route(post_attention_layernorm->forward(attend(h, in)), in.routing);
}

DecoderBody::DecoderBody(const DecoderSpec& spec, const ParamNaming& naming, const at::TensorOptions& options) {
  embed_tokens = register_module("embed_tokens", std::make_shared<Embedding>(spec.vocab_size, spec.hidden_size, options));
  for (int i = 0; i < static_cast<int>(spec.moe_layers.size()); ++i) {
    layers.push_back(std::make_shared<DecoderLayer>(spec, i, naming, options));
  }
  register_blocks(*this, "layers", layers);
  norm = register_module("norm", std::make_shared<RMSNorm>(spec.hidden_size, spec.rms_norm_eps, options,
                                                           spec.norm_scale_in_float32));
}

namespace {
// The spec, after check_decoder_spec: nothing is built from a spec with an impossible size.
const DecoderSpec& checked(const DecoderSpec& spec, const std::string& source) {
  check_decoder_spec(spec, source);
  return spec;
}
}  // namespace

DecoderLM::DecoderLM(ModelConfig config, const DecoderSpec& spec, const ParamNaming& naming, const at::Device& device,
                     at::ScalarType dtype)
    : config_(std::move(config)), spec_(checked(spec, config_.source)), rotary_(spec.rope, device, dtype) {
  const auto options = at::TensorOptions().device(device).dtype(dtype);
  model_ = register_module("model", std::make_shared<DecoderBody>(spec, naming, options));
  if (!spec.tie_word_embeddings) {
    lm_head_ = register_module("lm_head", std::make_shared<Linear>(spec.hidden_size, spec.vocab_size, false, options));
  }
}

namespace {
// Keeps every MoE layer's router logits of one forward, for the load-balancing loss.
class RouterLogitsCollector : public RouterHook {
 public:
  void on_route(const RouterEvent& event) override { logits.push_back(event.router_logits); }
  std::vector<at::Tensor> logits;
};
}  // namespace

ForwardOutput DecoderLM::forward(const at::Tensor& input_ids, const at::Tensor& attention_mask,
                                 const ForwardOptions& options) {
  RouterLogitsCollector collector;
  std::vector<RouterHook*> hooks = options.hooks;
  const bool aux_loss = options.aux_loss && spec_.load_balancing_loss;
  if (aux_loss) hooks.push_back(&collector);
  const auto dtype = model_->norm->weight.scalar_type();
  BlockInputs in(input_ids, attention_mask, options.cache, dtype, hooks, options.position_ids);
  std::tie(in.cos, in.sin) = rotary_.cos_sin(in.positions(), dtype);

  ForwardOutput out;
  auto h = run_blocks(model_->layers, model_->embed_tokens->forward(input_ids), in, options, out);
  if (options.routing_only) return {};
  finish_forward(model_->norm->forward(h), output_embedding(), options, out);
  if (aux_loss && !collector.logits.empty()) {
    out.aux_loss = load_balancing_loss(collector.logits, spec_.moe.router.top_k, in.routing.token_mask);
  }
  return out;
}

std::vector<MoELayer*> DecoderLM::moe_layers() { return moe_layers_of(model_->layers); }

std::unique_ptr<KVCache> DecoderLM::make_cache() const {
  return std::make_unique<KVCache>(static_cast<int64_t>(model_->layers.size()));
}

CheckpointBindings DecoderLM::checkpoint_bindings() { return bindings_with_expert_banks(*this); }

bool DecoderLM::skips_checkpoint_key(const std::string& key) const {
  if (spec_.skipped_checkpoint_layers <= 0) return false;
  static const std::string prefix = "model.layers.";
  if (key.compare(0, prefix.size(), prefix) != 0) return false;
  size_t end = prefix.size();
  while (end < key.size() && std::isdigit(static_cast<unsigned char>(key[end]))) ++end;
  if (end == prefix.size() || end >= key.size() || key[end] != '.' || end - prefix.size() > 9) return false;
  const int64_t layer = std::stoll(key.substr(prefix.size(), end - prefix.size()));
  const auto decoder_layers = static_cast<int64_t>(model_->layers.size());
  return layer >= decoder_layers && layer < decoder_layers + spec_.skipped_checkpoint_layers;
}

}  // namespace esft::nn
