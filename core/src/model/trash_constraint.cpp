#include "esft/model/trash_constraint.h"

#include <ATen/ATen.h>

#include "esft/error.h"
#include "esft/model/moe_causal_lm.h"
#include "esft/nn/moe_layer.h"

namespace esft {

std::optional<TrashConstraint> trash_constraint_of(MoECausalLM& model) {
  for (auto* layer : model.moe_layers())
    if (layer->trash_experts() > 0) return TrashConstraint::from_config(model.config());
  return std::nullopt;
}

const char* trash_ratio_name(TrashRatio r) { return r == TrashRatio::Full ? "full" : "topk"; }

TrashRatio parse_trash_ratio(const std::string& text, const std::string& where) {
  if (text == "full") return TrashRatio::Full;
  if (text == "topk") return TrashRatio::TopK;
  throw Error(where + ": constraint_ratio must be \"full\" or \"topk\", not \"" + text + "\"");
}

TrashConstraint TrashConstraint::from_config(const ModelConfig& config) {
  TrashConstraint c;
  c.alpha = config.get<double>("constraint_alpha", c.alpha);
  c.beta = config.get<double>("constraint_beta", c.beta);
  c.weight = config.get<double>("constraint_weight", c.weight);
  c.ratio = parse_trash_ratio(config.get<std::string>("constraint_ratio", "full"), config.source);
  if (!(c.alpha > 0) || !(c.beta > 0)) throw Error(config.source + ": constraint_alpha and constraint_beta must be > 0");
  if (!(c.weight >= 0)) throw Error(config.source + ": constraint_weight must be >= 0");
  return c;
}

at::Tensor trash_mass(const at::Tensor& probs, const at::Tensor& topk_idx, const at::Tensor& topk_weight,
                      int64_t trash_experts, TrashRatio ratio) {
  const int64_t E = probs.size(1);
  if (trash_experts < 1 || trash_experts >= E) {
    throw Error("trash mass: " + std::to_string(trash_experts) + " trash columns of " + std::to_string(E));
  }
  if (ratio == TrashRatio::Full) return probs.to(at::kFloat).narrow(1, E - trash_experts, trash_experts).sum(1);
  const auto w = topk_weight.to(at::kFloat);
  const auto on_trash = topk_idx.ge(E - trash_experts).to(at::kFloat);
  return (w * on_trash).sum(1) / w.sum(1).clamp_min(1e-20);
}

at::Tensor trash_constraint_loss(const RouterEvent& e, const TrashConstraint& c) {
  if (!e.probs.defined()) throw Error("the trash constraint needs router probabilities (layer " + std::to_string(e.layer) + ")");
  const auto r = trash_mass(e.probs, e.topk_idx, e.topk_weight, e.trash_experts, c.ratio).clamp(1e-8, 1 - 1e-8);
  auto nll = -((c.alpha - 1) * at::log(r) + (c.beta - 1) * at::log1p(-r));
  if (!e.token_mask.defined()) return nll.mean();
  const auto real = e.token_mask.to(nll.device(), at::kFloat);
  return (nll * real).sum() / real.sum().clamp_min(1);
}

void TrashConstraintHook::on_route(const RouterEvent& e) {
  if (e.trash_experts > 0) layers_.push_back(trash_constraint_loss(e, c_));
}

at::Tensor TrashConstraintHook::take_loss() {
  if (layers_.empty()) return {};
  auto loss = at::stack(layers_).mean();
  layers_.clear();
  return loss;
}

}  // namespace esft
