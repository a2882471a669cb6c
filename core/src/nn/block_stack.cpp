#include "esft/nn/block_stack.h"

#include <ATen/ATen.h>
#include <torch/nn/modules/container/modulelist.h>

#include "esft/nn/attention.h"

namespace esft::nn {

BlockInputs::BlockInputs(const at::Tensor& input_ids, const at::Tensor& attention_mask, KVCache* cache_,
                         at::ScalarType dtype, const std::vector<RouterHook*>& hooks, const at::Tensor& position_ids)
    : cache(cache_),
      attention_mask_(attention_mask),
      position_ids_(position_ids),
      batch_(input_ids.size(0)),
      length_(input_ids.size(1)),
      dtype_(dtype),
      device_(input_ids.device()),
      hooks_(hooks) {
  past = cache ? cache->length() : 0;
  if (attention_mask.defined()) routing.token_mask = attention_mask.narrow(1, past, length_).reshape({-1}).to(at::kBool);
  routing.hooks = &hooks_;
}

const at::Tensor& BlockInputs::attention_bias(int64_t sliding_window) const {
  auto it = bias_by_window_.find(sliding_window);
  if (it == bias_by_window_.end()) {
    it = bias_by_window_
             .emplace(sliding_window, causal_attention_bias(attention_mask_, batch_, length_, past, dtype_, device_,
                                                            sliding_window))
             .first;
  }
  return it->second;
}

at::Tensor BlockInputs::positions() const {
  if (position_ids_.defined()) return position_ids_;
  return at::arange(past, past + length_, at::TensorOptions().dtype(at::kLong).device(device_)).unsqueeze(0);
}

void register_blocks(torch::nn::Module& parent, const std::string& name, const Blocks& blocks) {
  torch::nn::ModuleList list;
  for (const auto& block : blocks) list->push_back(block);
  parent.register_module(name, list);
}

at::Tensor run_blocks(const Blocks& blocks, at::Tensor h, const BlockInputs& in, const ForwardOptions& options,
                      ForwardOutput& out) {
  if (options.hidden_states) out.hidden_states.push_back(h);
  const size_t L = blocks.size();
  size_t whole = L;  // the statistics pass runs the blocks before the last MoE block whole, then only its routing
  if (options.routing_only) {
    for (size_t i = 0; i < L; ++i)
      if (blocks[i]->moe_layer()) whole = i;
  }
  for (size_t i = 0; i < whole; ++i) {
    h = blocks[i]->forward(h, in);
    if (options.hidden_states && i + 1 < L) out.hidden_states.push_back(h);
  }
  if (!options.routing_only) return h;
  if (whole < L) blocks[whole]->route(h, in);
  return {};
}

void finish_forward(const at::Tensor& normed, const at::Tensor& output_embedding, const ForwardOptions& options,
                    ForwardOutput& out) {
  if (options.hidden_states) out.hidden_states.push_back(normed);
  if (options.final_hidden) out.final_hidden = normed;
  if (options.logits == LogitsMode::None) return;
  const auto last = options.logits == LogitsMode::Last ? normed.narrow(1, normed.size(1) - 1, 1) : normed;
  out.logits = at::linear(last, output_embedding);
}

std::vector<MoELayer*> moe_layers_of(const Blocks& blocks) {
  std::vector<MoELayer*> out;
  for (const auto& block : blocks)
    if (auto* moe = block->moe_layer()) out.push_back(moe);
  return out;
}

}  // namespace esft::nn
