#pragma once
// The one MoE layer every family uses: a router, the routed expert bank (`experts`) and optional shared expert(s).
// It is the only place that emits RouterEvents.
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include <string>
#include <vector>

#include "esft/model/router_event.h"
#include "esft/nn/expert_bank.h"
#include "esft/nn/linear.h"
#include "esft/nn/router.h"

namespace esft::nn {

struct MoESpec {
  RouterSpec router;
  std::string router_name = "gate";  // module name of the router (`gate`; gpt-oss: `router`)
  // The routed experts; num_experts and hidden are filled in from the router and the layer.
  ExpertBankSpec experts;
  int64_t shared_intermediate = 0;            // 0 = no shared expert
  std::string shared_name = "shared_expert";  // module name of the shared expert (HF differs per family)
  bool shared_expert_gate = false;            // qwen2_moe: sigmoid(x W^T) scales the shared expert
  // Select-MoE's trash cans: the router's last `trash_experts` columns have no expert. A slot that chooses one adds
  // nothing (its weight is lost); the expert bank holds the router's other columns.
  int64_t trash_experts = 0;
};

// Who listens to routing in this forward, and which tokens are real.
struct RoutingContext {
  at::Tensor token_mask;  // [N] bool or undefined
  const std::vector<RouterHook*>* hooks = nullptr;
};

class MoELayer : public torch::nn::Module {
 public:
  // The scoring-rule router of spec.router.
  MoELayer(const MoESpec& spec, int64_t hidden, int layer, const ParamNaming& naming, const at::TensorOptions& options);
  // A router of another kind (registered as spec.router_name; spec.router is not used).
  MoELayer(std::shared_ptr<RouterBase> router, const MoESpec& spec, int64_t hidden, int layer, const ParamNaming& naming,
           const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x, const RoutingContext& routing) const;  // x [B, T, H]
  // Only the routing of forward(): the router and its hooks, no expert. The statistics pass ends with this in the
  // last MoE layer.
  void route(const at::Tensor& x, const RoutingContext& routing) const;

  int layer_index() const { return layer_; }
  int64_t num_experts() const { return router_->num_experts() - spec_.trash_experts; }  // real experts (the bank)
  int64_t trash_experts() const { return spec_.trash_experts; }
  int64_t top_k() const { return router_->top_k(); }
  RouterBase& router() { return *router_; }
  ExpertBank& experts() { return *experts_; }
  SwiGLU* shared_experts() { return shared_.get(); }  // null when the family has none
  void set_trainable_experts(const std::vector<int64_t>& experts) { experts_->set_trainable_experts(experts); }

 private:
  MoESpec spec_;
  int layer_;
  std::shared_ptr<RouterBase> router_;
  std::shared_ptr<ExpertBank> experts_;
  std::shared_ptr<SwiGLU> shared_;
  std::shared_ptr<Linear> shared_gate_;

  Routing route_flat(const at::Tensor& flat, const RoutingContext& routing) const;
};

}  // namespace esft::nn
