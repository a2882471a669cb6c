#include "esft/nn/moe_layer.h"

#include <ATen/ATen.h>

namespace esft::nn {

MoELayer::MoELayer(const MoESpec& spec, int64_t hidden, int layer, const ParamNaming& naming,
                   const at::TensorOptions& options)
    : MoELayer(std::make_shared<Router>(spec.router, hidden, options), spec, hidden, layer, naming, options) {}

MoELayer::MoELayer(std::shared_ptr<RouterBase> router, const MoESpec& spec, int64_t hidden, int layer,
                   const ParamNaming& naming, const at::TensorOptions& options)
    : spec_(spec), layer_(layer) {
  router_ = register_module(spec.router_name, std::move(router));
  ExpertBankSpec bank = spec.experts;
  bank.num_experts = router_->num_experts();
  bank.hidden = hidden;
  experts_ = register_module("experts", std::make_shared<ExpertBank>(bank, layer, naming, options));
  if (spec.shared_intermediate > 0) {
    shared_ = register_module(spec.shared_name, std::make_shared<SwiGLU>(hidden, spec.shared_intermediate, options));
    if (spec.shared_expert_gate) {
      shared_gate_ = register_module("shared_expert_gate", std::make_shared<Linear>(hidden, 1, false, options));
    }
  }
}

Routing MoELayer::route_flat(const at::Tensor& flat, const RoutingContext& routing) const {
  auto r = router_->route(flat, routing.token_mask);
  if (routing.hooks && !routing.hooks->empty()) {
    RouterEvent event{layer_, routing.token_mask, r.logits, r.idx, r.weight, r.probs, r.dropped};
    for (auto* hook : *routing.hooks) hook->on_route(event);
  }
  return r;
}

void MoELayer::route(const at::Tensor& x, const RoutingContext& routing) const {
  route_flat(x.reshape({-1, x.size(-1)}), routing);
}

at::Tensor MoELayer::forward(const at::Tensor& x, const RoutingContext& routing) const {
  auto flat = x.reshape({-1, x.size(-1)});
  auto r = route_flat(flat, routing);
  auto y = experts_->forward(flat, r.idx, r.weight);
  if (shared_) {
    auto s = shared_->forward(flat);
    if (shared_gate_) s = at::sigmoid(shared_gate_->forward(flat)) * s;
    y = y + s;
  }
  return y.view(x.sizes());
}

}  // namespace esft::nn
