#include "esft/nn/decoder.h"

#include <ATen/ATen.h>
#include <torch/nn/modules/container/modulelist.h>

#include <cctype>
#include <map>

#include "esft/model/losses.h"
#include "esft/nn/decoder_config.h"

namespace esft::nn {

DecoderLayer::DecoderLayer(const DecoderSpec& spec, int layer, const ParamNaming& naming,
                           const at::TensorOptions& options) {
  const int64_t H = spec.hidden_size;
  if (!spec.sliding_windows.empty()) sliding_window_ = spec.sliding_windows.at(layer);
  self_attn = register_module("self_attn", std::make_shared<Attention>(spec.attention, layer, options));
  if (spec.moe_layers.at(layer)) {
    moe = register_module("mlp", std::make_shared<MoELayer>(spec.moe, H, layer, naming, options));
  } else {
    dense = register_module("mlp", std::make_shared<SwiGLU>(H, spec.dense_intermediate, options));
  }
  const bool f32 = spec.norm_scale_in_float32;
  input_layernorm = register_module("input_layernorm", std::make_shared<RMSNorm>(H, spec.rms_norm_eps, options, f32));
  post_attention_layernorm =
      register_module("post_attention_layernorm", std::make_shared<RMSNorm>(H, spec.rms_norm_eps, options, f32));
}

at::Tensor DecoderLayer::attend(const at::Tensor& h, const at::Tensor& cos, const at::Tensor& sin,
                                const at::Tensor& bias, KVCache* cache) const {
  return h + self_attn->forward(input_layernorm->forward(h), cos, sin, bias, cache);
}

at::Tensor DecoderLayer::forward(const at::Tensor& h, const at::Tensor& cos, const at::Tensor& sin,
                                 const at::Tensor& bias, KVCache* cache, const RoutingContext& routing) const {
  auto x = attend(h, cos, sin, bias, cache);
  auto normed = post_attention_layernorm->forward(x);
  return x + (moe ? moe->forward(normed, routing) : dense->forward(normed));
}

void DecoderLayer::route(const at::Tensor& h, const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& bias,
                         KVCache* cache, const RoutingContext& routing) const {
  moe->route(post_attention_layernorm->forward(attend(h, cos, sin, bias, cache)), routing);
}

DecoderBody::DecoderBody(const DecoderSpec& spec, const ParamNaming& naming, const at::TensorOptions& options) {
  embed_tokens = register_module("embed_tokens", std::make_shared<Embedding>(spec.vocab_size, spec.hidden_size, options));
  torch::nn::ModuleList list;
  for (int i = 0; i < static_cast<int>(spec.moe_layers.size()); ++i) {
    layers.push_back(std::make_shared<DecoderLayer>(spec, i, naming, options));
    list->push_back(layers.back());
  }
  register_module("layers", list);
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
  const int64_t B = input_ids.size(0), T = input_ids.size(1);
  const int64_t past = options.cache ? options.cache->length() : 0;
  const auto device = input_ids.device();
  const auto dtype = model_->norm->weight.scalar_type();

  auto positions = at::arange(past, past + T, at::TensorOptions().dtype(at::kLong).device(device)).unsqueeze(0);
  auto [cos, sin] = rotary_.cos_sin(positions, dtype);
  // One mask per distinct window (gpt-oss alternates sliding and full layers).
  std::map<int64_t, at::Tensor> bias_by_window;
  auto bias_for = [&](int64_t window) -> const at::Tensor& {
    auto it = bias_by_window.find(window);
    if (it == bias_by_window.end()) {
      it = bias_by_window.emplace(window, causal_attention_bias(attention_mask, B, T, past, dtype, device, window)).first;
    }
    return it->second;
  };

  RouterLogitsCollector collector;
  std::vector<RouterHook*> hooks = options.hooks;
  const bool aux_loss = options.aux_loss && spec_.load_balancing_loss;
  if (aux_loss) hooks.push_back(&collector);
  RoutingContext routing;
  if (attention_mask.defined()) routing.token_mask = attention_mask.narrow(1, past, T).reshape({-1}).to(at::kBool);
  routing.hooks = &hooks;

  ForwardOutput out;
  auto h = model_->embed_tokens->forward(input_ids);
  if (options.hidden_states) out.hidden_states.push_back(h);
  const size_t L = model_->layers.size();
  // The statistics pass runs the layers before the last MoE layer whole, and only the routing of that one.
  size_t whole = L;
  if (options.routing_only) {
    for (size_t i = 0; i < L; ++i)
      if (model_->layers[i]->moe) whole = i;
  }
  for (size_t i = 0; i < whole; ++i) {
    const auto& layer = *model_->layers[i];
    h = layer.forward(h, cos, sin, bias_for(layer.sliding_window()), options.cache, routing);
    if (options.hidden_states && i + 1 < L) out.hidden_states.push_back(h);
  }
  if (options.routing_only) {
    if (whole < L) {
      const auto& layer = *model_->layers[whole];
      layer.route(h, cos, sin, bias_for(layer.sliding_window()), options.cache, routing);
    }
    return {};
  }
  h = model_->norm->forward(h);
  if (options.hidden_states) out.hidden_states.push_back(h);
  if (options.final_hidden) out.final_hidden = h;

  if (options.logits != LogitsMode::None) {
    auto last = options.logits == LogitsMode::Last ? h.narrow(1, T - 1, 1) : h;
    out.logits = lm_head_ ? lm_head_->forward(last) : at::linear(last, model_->embed_tokens->weight);
  }
  if (aux_loss && !collector.logits.empty()) {
    out.aux_loss = load_balancing_loss(collector.logits, spec_.moe.router.top_k, routing.token_mask);
  }
  return out;
}

std::vector<MoELayer*> DecoderLM::moe_layers() {
  std::vector<MoELayer*> out;
  for (auto& layer : model_->layers)
    if (layer->moe) out.push_back(layer->moe.get());
  return out;
}

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
