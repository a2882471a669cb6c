#pragma once
// The routers' part of a training step (shared/spec/VARIANTS.md §1-3), from the router events of each forward pass:
//   - the loss they add: nothing (router_mode none), aux_loss_coef * the load-balancing loss (normal), or that plus
//     the Boids terms on the last MoE layer or every one (boids); on models with trash cans (Select-MoE), also the
//     weighted constraint on the trash mass;
//   - the figures a run reports in every mode: the load-balancing loss, the Boids terms (unweighted), the fraction
//     of (token, choice) pairs an expert had no room for, and each expert's share of the pairs per MoE layer.
// Figures accumulate on the device and are read once per step (RoutingFigures), so no layer waits for the host.
#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "esft/model/moe_causal_lm.h"
#include "esft/model/router_event.h"
#include "esft/model/trash_constraint.h"
#include "esft/train/train_options.h"

namespace esft::train {

// Routing figures over some tokens. Means are over the micro-batches that had the figure; nullopt when none had.
struct RoutingFigures {
  std::optional<double> aux;                       // the load-balancing loss, unweighted
  std::optional<double> constraint;                // Select-MoE's trash-mass constraint, unweighted
  std::optional<double> boids_cohesion, boids_separation, boids_alignment;  // unweighted
  double routed_pairs = 0, dropped_pairs = 0;      // real (token, choice) pairs, and those over capacity
  std::map<int, std::vector<double>> expert_pairs;  // MoE layer -> pairs routed to each expert (before drops)

  std::optional<double> drop_fraction() const;     // dropped / routed; nullopt without routed pairs
  // The entropy of each MoE layer's expert shares, averaged over layers (nats); `normalized` divides each by ln E.
  std::optional<double> utilisation_entropy(bool normalized) const;
  // The fraction of (layer, expert) whose share exceeds `threshold_times_uniform` / E (overuse; default 2 / E).
  std::optional<double> overuse_rate(double threshold_times_uniform = 2.0) const;
  void add(const RoutingFigures& other);            // sums counts, averages means by micro-batch weight
  int64_t micro_batches = 0;                        // how many forward passes the means cover

  nlohmann::json to_json() const;                   // every field (null for nullopt), for run states and summaries
  static RoutingFigures from_json(const nlohmann::json& j);  // the inverse; esft::Error for a malformed object
};

// Counts (token, choice) pairs per expert and the dropped ones, on the device, for any family.
class RoutingTally : public RouterHook {
 public:
  void on_route(const RouterEvent& event) override;
  // Copies the counts to the host into `figures` and starts again.
  void read_into(RoutingFigures& figures);

 private:
  std::map<int, at::Tensor> expert_pairs_;  // layer -> [E] float64
  at::Tensor routed_, dropped_;             // 0-d float64
};

class RouterObjective : public RouterHook {
 public:
  // `routers_train`: whether any router parameter trains. The load-balancing loss is computed (and reported) when
  // they do or when aux_loss_coef > 0; ESFT, whose routers are frozen, then skips it. `trash` (models with
  // Select-MoE trash cans): its weight times the constraint on their mass joins the loss while routers train.
  RouterObjective(const TrainOptions& options, bool routers_train, std::optional<TrashConstraint> trash = {});

  // Before a micro-batch's forward pass: asks for the load-balancing loss and the final hidden states when the
  // objective needs them, and listens to the routers.
  void prepare(ForwardOptions& options);
  // After it: the routers' loss of this micro-batch (float32 scalar, undefined when it adds none), `weight` times
  // the unweighted terms (the micro-batch's share of the step). `step` is the number of updates made so far (the
  // Boids warm-up). Throws esft::Error when Boids cannot run (k_nn >= the micro-batch's real tokens).
  at::Tensor loss(const ForwardOutput& out, const at::Tensor& attention_mask, int64_t step, double weight);
  // The figures since the last call (one host copy), and starts again.
  RoutingFigures take_figures();

  void on_route(const RouterEvent& event) override;

 private:
  TrainOptions options_;
  bool want_aux_, routers_train_;
  std::optional<TrashConstraintHook> trash_;
  RoutingTally tally_;
  std::vector<RouterEvent> events_;  // this micro-batch's, for Boids
  at::Tensor aux_sum_, constraint_sum_, cohesion_sum_, separation_sum_, alignment_sum_;  // detached, over micro-batches
  int64_t micro_batches_ = 0, boids_batches_ = 0;
};

}  // namespace esft::train
