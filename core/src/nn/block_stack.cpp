#include "esft/nn/block_stack.h"

#include <ATen/ATen.h>
#include <torch/nn/modules/container/modulelist.h>

#include <atomic>

#include "esft/error.h"
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

BlockInputs::BlockInputs(const BlockInputs& source, const at::Device& device)
    : past(source.past),
      cos(source.cos.defined() ? source.cos.to(device) : at::Tensor()),
      sin(source.sin.defined() ? source.sin.to(device) : at::Tensor()),
      cache(source.cache),
      attention_mask_(source.attention_mask_.defined() ? source.attention_mask_.to(device) : at::Tensor()),
      position_ids_(source.position_ids_.defined() ? source.position_ids_.to(device) : at::Tensor()),
      batch_(source.batch_),
      length_(source.length_),
      dtype_(source.dtype_),
      device_(device),
      hooks_(source.hooks_) {
  if (source.routing.token_mask.defined()) routing.token_mask = source.routing.token_mask.to(device);
  routing.hooks = &hooks_;
}

const BlockInputs& BlockInputs::on(const at::Device& device) const {
  if (device == device_) return *this;
  for (const auto& copy : elsewhere_)
    if (copy->device_ == device) return *copy;
  elsewhere_.push_back(std::unique_ptr<BlockInputs>(new BlockInputs(*this, device)));
  return *elsewhere_.back();
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

namespace {
std::atomic<bool> blocks_spread{false};  // place_blocks has run in this process
}  // namespace

at::Tensor run_blocks(const Blocks& blocks, at::Tensor h, const BlockInputs& in, const ForwardOptions& options,
                      ForwardOutput& out) {
  if (options.hidden_states) out.hidden_states.push_back(h);
  const size_t L = blocks.size();
  size_t whole = L;  // the statistics pass runs the blocks before the last MoE block whole, then only its routing
  if (options.routing_only) {
    for (size_t i = 0; i < L; ++i)
      if (blocks[i]->moe_layer()) whole = i;
  }
  // A block placed on another device (place_blocks) runs there: h moves to it, and back at the end. Looking a
  // block's device up walks its parameters, so a process that never spread a model skips it.
  const auto home = h.device();
  auto device_of = [home](const DecoderBlock& block) {
    return blocks_spread.load() ? block.parameters().front().device() : home;
  };
  for (size_t i = 0; i < whole; ++i) {
    const auto device = device_of(*blocks[i]);
    if (h.device() != device) h = h.to(device);
    h = blocks[i]->forward(h, in.on(device));
    if (options.hidden_states && i + 1 < L) out.hidden_states.push_back(h);
  }
  if (!options.routing_only) return h.device() == home ? h : h.to(home);
  if (whole < L) {
    const auto device = device_of(*blocks[whole]);
    blocks[whole]->route(h.to(device), in.on(device));
  }
  return {};
}

std::vector<at::Device> place_blocks(torch::nn::Module& model, const std::vector<at::Device>& devices) {
  if (devices.empty()) throw Error("no device to place the blocks on");
  std::vector<std::pair<std::string, std::shared_ptr<torch::nn::Module>>> blocks;
  for (const auto& item : model.named_modules()) {
    if (std::dynamic_pointer_cast<DecoderBlock>(item.value())) blocks.emplace_back(item.key() + ".", item.value());
  }
  if (blocks.empty()) throw Error("the model has no blocks to spread over devices");
  auto in_block = [&](const std::string& name) {
    for (const auto& b : blocks)
      if (name.compare(0, b.first.size(), b.first) == 0) return true;
    return false;
  };
  at::NoGradGuard no_grad;
  for (auto& item : model.named_parameters())
    if (!in_block(item.key())) item.value().set_data(item.value().to(devices.front()));
  for (auto& item : model.named_buffers())
    if (!in_block(item.key())) item.value().set_data(item.value().to(devices.front()));
  blocks_spread = true;
  std::vector<at::Device> placed;
  const auto L = blocks.size(), D = devices.size();
  for (size_t i = 0; i < L; ++i) {
    placed.push_back(devices[i * D / L]);
    blocks[i].second->to(placed.back());
  }
  return placed;
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
