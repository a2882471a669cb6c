#pragma once
// The forward pass around a family's blocks, shared by every decoder-only model here: the attention masks and the
// routing context built from the attention mask, the blocks in order (for the statistics pass, whole blocks up to
// the last MoE block and then only its routing), hidden states, and the logits. A family supplies what differs:
// its blocks (DecoderLayer, or its own, as llama.cpp's per-architecture graphs do), embeddings, positions, final
// norm and auxiliary loss.
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include <map>
#include <memory>
#include <vector>

#include "esft/model/moe_causal_lm.h"
#include "esft/nn/kv_cache.h"
#include "esft/nn/moe_layer.h"

namespace esft::nn {

// What every block of one forward sees.
class BlockInputs {
 public:
  // input_ids [B, T]; attention_mask [B, past + T] or undefined; `hooks` hear every MoE layer's routing;
  // position_ids [B, T] (ForwardOptions::position_ids) or undefined.
  BlockInputs(const at::Tensor& input_ids, const at::Tensor& attention_mask, KVCache* cache, at::ScalarType dtype,
              const std::vector<RouterHook*>& hooks, const at::Tensor& position_ids = {});
  BlockInputs(const BlockInputs&) = delete;
  BlockInputs& operator=(const BlockInputs&) = delete;

  // The additive causal mask [B, 1, T, past + T] for a sliding window (0 = full attention), built once per window.
  const at::Tensor& attention_bias(int64_t sliding_window = 0) const;
  // Positions of the new tokens: the given position_ids [B, T], else [1, T]: past .. past + T - 1.
  at::Tensor positions() const;
  // These inputs on `device`, for a block placed there (layers spread over several devices): this object on its
  // own device, else a copy made on first use. Set cos and sin before the blocks run.
  const BlockInputs& on(const at::Device& device) const;

  int64_t past = 0;            // tokens already in the cache
  at::Tensor cos, sin;         // rotary tables [B, T, rotary_dim], set by the family; undefined without rotary
  KVCache* cache = nullptr;
  RoutingContext routing;

 private:
  at::Tensor attention_mask_, position_ids_;
  int64_t batch_, length_;
  at::ScalarType dtype_;
  at::Device device_;
  std::vector<RouterHook*> hooks_;
  mutable std::map<int64_t, at::Tensor> bias_by_window_;
  mutable std::vector<std::unique_ptr<BlockInputs>> elsewhere_;  // copies on other devices

  BlockInputs(const BlockInputs& source, const at::Device& device);  // for on()
};

// One block of the stack: h -> h after this block's attention and MLP (or MoE layer).
class DecoderBlock : public torch::nn::Module {
 public:
  virtual at::Tensor forward(const at::Tensor& h, const BlockInputs& in) const = 0;
  // forward() up to the routing of this block's MoE layer (called only on blocks with one): the statistics pass.
  virtual void route(const at::Tensor& h, const BlockInputs& in) const = 0;
  virtual MoELayer* moe_layer() const = 0;  // null for a dense block
};

using Blocks = std::vector<std::shared_ptr<DecoderBlock>>;

// Registers `blocks` as the ModuleList `name` of `parent` (Hugging Face's `layers.{i}`, tinymoe's `blocks.{i}`).
void register_blocks(torch::nn::Module& parent, const std::string& name, const Blocks& blocks);

// Runs `blocks` on the embeddings `h` and returns the last block's output, on h's device: a block placed on another
// device (place_blocks) gets h and the inputs there. Appends the embeddings and every block
// output but the last to out.hidden_states when options ask (the family appends its final norm's output). With
// options.routing_only it stops after the last MoE block's routing and returns an undefined tensor.
at::Tensor run_blocks(const Blocks& blocks, at::Tensor h, const BlockInputs& in, const ForwardOptions& options,
                      ForwardOutput& out);

// The rest of a forward after the final norm: hidden states and final_hidden as options ask, and logits against
// `output_embedding` [V, H] (all positions or the last).
void finish_forward(const at::Tensor& normed, const at::Tensor& output_embedding, const ForwardOptions& options,
                    ForwardOutput& out);

// Spreads the blocks of `model` (its DecoderBlock modules, in order) over `devices`: block i of L goes to device
// i * D / L, contiguous runs as even as the count allows, and everything outside the blocks (embeddings, final norm,
// lm_head) to the first device, where inputs enter and outputs leave. For a model bigger than one device, in one
// process (build and load it on the CPU first). Returns each block's device. Throws esft::Error for a model without
// blocks or an empty device list.
std::vector<at::Device> place_blocks(torch::nn::Module& model, const std::vector<at::Device>& devices);

// The MoE layers of `blocks`, in order.
std::vector<MoELayer*> moe_layers_of(const Blocks& blocks);

}  // namespace esft::nn
