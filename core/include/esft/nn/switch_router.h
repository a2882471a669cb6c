#pragma once
// The Switch Transformer router (tinymoe; shared/spec/VARIANTS.md §2), usable by any family: logits = x W^T + b,
// Gaussian jitter on the logits in training only, p = softmax(logits), the top k experts of p, and an expert
// capacity: each expert takes at most ceil(capacity_factor * tokens / E) tokens, claimed in token order, and a
// token over capacity loses that expert (weight 0: the block passes it on through the residual). Kept tokens are
// weighted by their router probability p, not renormalised.
#include <ATen/core/Tensor.h>

#include "esft/nn/router.h"

namespace esft::nn {

struct SwitchRouterSpec {
  int64_t num_experts = 0;
  int64_t top_k = 1;
  double jitter = 0;           // standard deviation of the training noise on the logits; 0 = none
  double capacity_factor = 0;  // 0 = unlimited capacity (no drops)
};

// The experts' capacity for `tokens` real tokens: ceil(capacity_factor * tokens / E); factor 0 means no limit
// (returns tokens).
int64_t expert_capacity(double capacity_factor, int64_t tokens, int64_t num_experts);

// Which (token, choice) pairs an expert still had room for: choices claim slots by rank (every token's first
// choice before any second choice, as in GShard and Switch), tokens within a rank in order (batch-major); padding
// (token_mask false) claims nothing and counts as dropped. idx [N, k]; returns [N, k] bool, true = dropped.
at::Tensor capacity_drops(const at::Tensor& idx, const at::Tensor& token_mask, int64_t num_experts, int64_t capacity);
// The same with the capacity a 0-d int64 tensor on idx's device (nothing waits for the device).
at::Tensor capacity_drops(const at::Tensor& idx, const at::Tensor& token_mask, int64_t num_experts,
                          const at::Tensor& capacity);

class SwitchRouter : public RouterBase {
 public:
  // Throws esft::Error for top_k outside [1, E], a negative jitter or a capacity factor < 0.
  SwitchRouter(const SwitchRouterSpec& spec, int64_t hidden, const at::TensorOptions& options);
  // x [N, H]; token_mask [N] bool or undefined (all real). Jitter only while the module is in training mode.
  // Routing: logits before jitter; probs the float32 softmax of the jittered logits; weight = p of the chosen
  // expert, 0 where dropped; dropped [N, k] (padding counts as dropped).
  Routing route(const at::Tensor& x, const at::Tensor& token_mask) const override;
  int64_t num_experts() const override { return spec_.num_experts; }
  int64_t top_k() const override { return spec_.top_k; }
  const SwitchRouterSpec& spec() const { return spec_; }

  at::Tensor weight;  // [E, H]
  at::Tensor bias;    // [E]

 private:
  SwitchRouterSpec spec_;
};

// The Switch load-balancing loss over real tokens: importance_e = mean p_e, load_e = the fraction of tokens whose
// first choice is e (before capacity drops), aux = E * sum_e importance_e * load_e (1 when perfectly balanced).
// probs [N, E]; first_choice [N]; token_mask [N] bool or undefined.
at::Tensor switch_load_balancing_loss(const at::Tensor& probs, const at::Tensor& first_choice,
                                      const at::Tensor& token_mask);

}  // namespace esft::nn
