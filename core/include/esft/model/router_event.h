#pragma once
// Routing decisions leave a MoE layer in exactly one way: the shared MoE layer emits one RouterEvent per forward.
// ESFT statistics, Select-MoE scoring, regularizers and the load-balancing loss all consume these events, so every
// family reports routing identically and no family emits events itself.
#include <ATen/core/Tensor.h>

namespace esft {

struct RouterEvent {
  int layer = -1;             // Hugging Face decoder layer index
  at::Tensor token_mask;      // [N] bool: which of the N tokens are real (not padding); undefined = all real
  at::Tensor router_logits;   // [N, E] raw router scores before any softmax / sigmoid
  at::Tensor topk_idx;        // [N, k] int64 chosen experts
  at::Tensor topk_weight;     // [N, k] weights applied to the experts' outputs (after normalisation and scaling)
  at::Tensor probs;           // [N, E] float32 probabilities the router chose from; undefined where it has none
  at::Tensor dropped;         // [N, k] bool, true = the expert was full (capacity routers); undefined = none dropped
  // Select-MoE: the last trash_experts of the E columns are trash cans (no expert; a slot there adds nothing).
  int64_t trash_experts = 0;
};

class RouterHook {
 public:
  virtual ~RouterHook() = default;
  virtual void on_route(const RouterEvent& event) = 0;
};

}  // namespace esft
