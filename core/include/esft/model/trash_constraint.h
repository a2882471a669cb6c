#pragma once
// Select-MoE's constraint on the mass routed to trash cans (shared/spec/VARIANTS.md §1). A MoE layer with trash
// experts has E router columns of which the last T are trash cans. Per real token, the trash mass r is
//   ratio "full": the softmax probability of the T trash columns (every token gets a gradient), or
//   ratio "topk": the chosen slots' weight on trash columns over the weight of all chosen slots,
// clamped to [1e-8, 1 - 1e-8]; the loss is the Beta(alpha, beta) negative log-likelihood
//   L_c = -[(alpha - 1) log r + (beta - 1) log(1 - r)],
// averaged over real tokens, then over layers. With the defaults (alpha 1, beta 5) it pushes trash mass towards 0
// unless the language loss prefers the trash. The plain Beta NLL, with no special case for alpha = 1 (the two
// public versions of the reference disagree there).
#include <ATen/core/Tensor.h>

#include <optional>
#include <string>
#include <vector>

#include "esft/model/model_config.h"
#include "esft/model/router_event.h"

namespace esft {

enum class TrashRatio { Full, TopK };

struct TrashConstraint {
  double alpha = 1.0, beta = 5.0;
  TrashRatio ratio = TrashRatio::Full;
  double weight = 0.01;  // constraint_weight: its share of the training loss

  // constraint_alpha, constraint_beta, constraint_ratio ("full" | "topk"), constraint_weight of a select_moe
  // config.json, over the defaults above. Throws esft::Error naming the key for values out of range.
  static TrashConstraint from_config(const ModelConfig& config);
};

class MoECausalLM;

// The constraint of a model with trash cans in some MoE layer (its config's settings); nullopt for other models.
std::optional<TrashConstraint> trash_constraint_of(MoECausalLM& model);

const char* trash_ratio_name(TrashRatio r);
TrashRatio parse_trash_ratio(const std::string& text, const std::string& where);  // esft::Error for another word

// The trash mass r [N] of one layer's routing: probs [N, E] float32, topk_idx/topk_weight [N, k]; the last
// `trash_experts` columns are trash. Not clamped.
at::Tensor trash_mass(const at::Tensor& probs, const at::Tensor& topk_idx, const at::Tensor& topk_weight,
                      int64_t trash_experts, TrashRatio ratio);

// L_c of one layer (a float32 scalar): the Beta NLL of the clamped trash mass, averaged over the real tokens
// (token_mask [N] bool, undefined = all real; 0 when no token is real).
at::Tensor trash_constraint_loss(const RouterEvent& event, const TrashConstraint& c);

// Collects L_c from every MoE layer with trash cans that routes in a forward pass.
class TrashConstraintHook : public RouterHook {
 public:
  explicit TrashConstraintHook(TrashConstraint c) : c_(c) {}
  void on_route(const RouterEvent& event) override;
  // The mean over the layers seen since the last call (undefined when none had trash cans), and starts again.
  at::Tensor take_loss();
  void clear() { layers_.clear(); }
  const TrashConstraint& settings() const { return c_; }

 private:
  TrashConstraint c_;
  std::vector<at::Tensor> layers_;
};

}  // namespace esft
