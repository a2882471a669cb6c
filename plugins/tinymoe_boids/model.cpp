// tinymoe's blocks and model, assembled from core blocks.
#include <ATen/ATen.h>

#include <string>

#include "esft/error.h"
#include "esft/model/model_family.h"
#include "esft/nn/expert_bank.h"
#include "tinymoe.h"

namespace tinymoe {

using esft::nn::Linear;

FeedForward::FeedForward(int64_t hidden, int64_t inner, const at::TensorOptions& options) {
  fc1 = register_module("fc1", std::make_shared<Linear>(hidden, inner, true, options));
  fc2 = register_module("fc2", std::make_shared<Linear>(inner, hidden, true, options));
}

at::Tensor FeedForward::forward(const at::Tensor& x) const { return fc2->forward(at::silu(fc1->forward(x))); }

Block::Block(const TinyMoESpec& spec, int index, const at::TensorOptions& options) : dropout_(spec.dropout) {
  ln1 = register_module("ln1", std::make_shared<esft::nn::LayerNorm>(spec.hidden, spec.norm_eps, options));
  esft::nn::AttentionSpec a;
  a.hidden_size = spec.hidden;
  a.num_heads = a.num_kv_heads = spec.heads;
  a.head_dim = spec.hidden / spec.heads;
  a.qkv_bias = a.o_bias = true;
  attn = register_module("attn", std::make_shared<esft::nn::Attention>(a, index, options));
  ln2 = register_module("ln2", std::make_shared<esft::nn::LayerNorm>(spec.hidden, spec.norm_eps, options));
  if (!spec.moe_layers.at(static_cast<size_t>(index))) {
    ffn = register_module("ffn", std::make_shared<FeedForward>(spec.hidden, spec.ffn, options));
    return;
  }
  esft::nn::MoESpec m;
  m.router_name = "router";
  m.experts.intermediate = spec.ffn;
  m.experts.bias = true;
  m.experts.layout = esft::nn::ExpertCheckpointLayout::Fused;
  m.experts.activation = esft::nn::ExpertActivation::PlainSiLU;
  auto router = std::make_shared<esft::nn::SwitchRouter>(spec.router, spec.hidden, options);
  moe = register_module("moe", std::make_shared<esft::nn::MoELayer>(router, m, spec.hidden, index, naming(), options));
}

at::Tensor Block::drop(const at::Tensor& x) const {
  return dropout_ > 0 && is_training() ? at::dropout(x, dropout_, /*train=*/true) : x;
}

at::Tensor Block::attend(const at::Tensor& h, const esft::nn::BlockInputs& in) const {
  // Positions are learned: no rotary.
  return h + drop(attn->forward(ln1->forward(h), {}, {}, in.attention_bias(), in.cache));
}

at::Tensor Block::forward(const at::Tensor& h, const esft::nn::BlockInputs& in) const {
  const auto x = attend(h, in);
  const auto normed = ln2->forward(x);
  // A token its expert had no room for gets 0 from the MoE layer and passes on through the residual.
  return x + drop(moe ? moe->forward(normed, in.routing) : ffn->forward(normed));
}

void Block::route(const at::Tensor& h, const esft::nn::BlockInputs& in) const {
  moe->route(ln2->forward(attend(h, in)), in.routing);
}

namespace {
// Each MoE block's probabilities and first choices, for the Switch load-balancing loss.
class SwitchAuxCollector : public esft::RouterHook {
 public:
  void on_route(const esft::RouterEvent& e) override {
    losses.push_back(esft::nn::switch_load_balancing_loss(e.probs, e.topk_idx.select(1, 0), e.token_mask));
  }
  std::vector<at::Tensor> losses;
};
}  // namespace

TinyMoELM::TinyMoELM(esft::ModelConfig config, const TinyMoESpec& spec, const at::Device& device, at::ScalarType dtype)
    : config_(std::move(config)), spec_(spec) {
  const auto options = at::TensorOptions().device(device).dtype(dtype);
  wte_ = register_module("wte", std::make_shared<esft::nn::Embedding>(spec.vocab_size, spec.hidden, options));
  wpe_ = register_module("wpe", std::make_shared<esft::nn::Embedding>(spec.max_positions, spec.hidden, options));
  for (int i = 0; i < static_cast<int>(spec.layers); ++i) blocks_.push_back(std::make_shared<Block>(spec, i, options));
  esft::nn::register_blocks(*this, "blocks", blocks_);
  ln_f_ = register_module("ln_f", std::make_shared<esft::nn::LayerNorm>(spec.hidden, spec.norm_eps, options));
  if (!spec.tie_word_embeddings) {
    lm_head_ = register_module("lm_head", std::make_shared<Linear>(spec.hidden, spec.vocab_size, false, options));
  }
}

esft::ForwardOutput TinyMoELM::forward(const at::Tensor& input_ids, const at::Tensor& attention_mask,
                                       const esft::ForwardOptions& options) {
  const int64_t T = input_ids.size(1);
  const int64_t past = options.cache ? options.cache->length() : 0;
  if (past + T > spec_.max_positions) {
    throw esft::Error("a sequence of " + std::to_string(past + T) + " tokens is longer than this model's " +
                      std::to_string(spec_.max_positions) + " positions (max_position_embeddings)");
  }
  SwitchAuxCollector aux;
  std::vector<esft::RouterHook*> hooks = options.hooks;
  if (options.aux_loss) hooks.push_back(&aux);
  const esft::nn::BlockInputs in(input_ids, attention_mask, options.cache, ln_f_->weight.scalar_type(), hooks,
                                 options.position_ids);

  esft::ForwardOutput out;
  auto h = wte_->forward(input_ids) + wpe_->forward(in.positions());
  if (spec_.dropout > 0 && is_training()) h = at::dropout(h, spec_.dropout, /*train=*/true);
  h = esft::nn::run_blocks(blocks_, h, in, options, out);
  if (options.routing_only) return {};
  esft::nn::finish_forward(ln_f_->forward(h), output_embedding(), options, out);
  if (options.aux_loss && !aux.losses.empty()) out.aux_loss = at::stack(aux.losses).mean();
  return out;
}

std::vector<esft::nn::MoELayer*> TinyMoELM::moe_layers() { return esft::nn::moe_layers_of(blocks_); }

at::Tensor TinyMoELM::output_embedding() const { return lm_head_ ? lm_head_->weight : wte_->weight; }

std::unique_ptr<esft::nn::KVCache> TinyMoELM::make_cache() const {
  return std::make_unique<esft::nn::KVCache>(static_cast<int64_t>(blocks_.size()));
}

esft::CheckpointBindings TinyMoELM::checkpoint_bindings() { return esft::nn::bindings_with_expert_banks(*this); }

std::shared_ptr<esft::ModelFamily> make_family() {
  return std::make_shared<esft::FactoryFamily>(
      "tinymoe_boids", std::vector<std::string>{"tinymoe"}, naming(), chat_format(),
      [](const esft::ModelConfig& config, const c10::Device& device, c10::ScalarType dtype) {
        return std::make_shared<TinyMoELM>(config, read_spec(config), device, dtype);
      });
}

}  // namespace tinymoe
