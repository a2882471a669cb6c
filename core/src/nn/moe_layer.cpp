#include "esft/nn/moe_layer.h"

#include <ATen/ATen.h>

#include "esft/error.h"

namespace esft::nn {

MoELayer::MoELayer(const MoESpec& spec, int64_t hidden, int layer, const ParamNaming& naming,
                   const at::TensorOptions& options)
    : MoELayer(std::make_shared<Router>(spec.router, hidden, options), spec, hidden, layer, naming, options) {}

MoELayer::MoELayer(std::shared_ptr<RouterBase> router, const MoESpec& spec, int64_t hidden, int layer,
                   const ParamNaming& naming, const at::TensorOptions& options)
    : spec_(spec), layer_(layer) {
  router_ = register_module(spec.router_name, std::move(router));
  if (spec.trash_experts < 0 || spec.trash_experts >= router_->num_experts()) {
    throw Error("layer " + std::to_string(layer) + ": " + std::to_string(spec.trash_experts) +
                " trash experts leave no expert among the router's " + std::to_string(router_->num_experts()) + " columns");
  }
  ExpertBankSpec bank = spec.experts;
  bank.num_experts = router_->num_experts() - spec.trash_experts;
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
    RouterEvent event{layer_, routing.token_mask, r.logits, r.idx, r.weight, r.probs, r.dropped, spec_.trash_experts};
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
  at::Tensor y;
  if (spec_.trash_experts == 0) {
    y = experts_->forward(flat, r.idx, r.weight);
  } else {  // only the (token, slot) pairs on a real expert reach the bank
    const int64_t k = r.idx.size(1);
    const auto pairs = r.idx.reshape({-1}).lt(num_experts()).nonzero().squeeze(1);
    // Every slot on a trash can: nothing for the bank, unless the experts are spread over ranks, whose exchanges
    // need this rank's part (even empty).
    const bool nothing = pairs.numel() == 0 && !experts_->expert_group();
    y = nothing ? at::zeros_like(flat)
                : experts_->forward_pairs(flat, at::div(pairs, k, "floor"), r.idx.reshape({-1}).index_select(0, pairs),
                                          r.weight.reshape({-1}).index_select(0, pairs));
  }
  if (shared_) {
    auto s = shared_->forward(flat);
    if (shared_gate_) s = at::sigmoid(shared_gate_->forward(flat)) * s;
    y = y + s;
  }
  return y.view(x.sizes());
}

}  // namespace esft::nn
