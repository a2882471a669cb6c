#include "esft/train/router_objective.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "esft/error.h"

namespace esft::train {

namespace {

// `sum += value` for 0-d tensors kept on the device (detached).
void accumulate(at::Tensor& sum, const at::Tensor& value) {
  const auto v = value.detach().to(at::kDouble);
  sum = sum.defined() ? sum + v : v;
}

std::optional<double> mean_of(const at::Tensor& sum, int64_t count) {
  if (!sum.defined() || count == 0) return std::nullopt;
  return sum.item<double>() / static_cast<double>(count);
}

// Mean of two optional means weighted by how many micro-batches each covers.
std::optional<double> weighted(const std::optional<double>& a, int64_t na, const std::optional<double>& b, int64_t nb) {
  if (!a) return b;
  if (!b) return a;
  return (*a * static_cast<double>(na) + *b * static_cast<double>(nb)) / static_cast<double>(na + nb);
}

}  // namespace

std::optional<double> RoutingFigures::drop_fraction() const {
  if (routed_pairs <= 0) return std::nullopt;
  return dropped_pairs / routed_pairs;
}

std::optional<double> RoutingFigures::utilisation_entropy(bool normalized) const {
  double sum = 0;
  int layers = 0;
  for (const auto& [layer, pairs] : expert_pairs) {
    double total = 0;
    for (double c : pairs) total += c;
    if (total <= 0) continue;
    double h = 0;
    for (double c : pairs)
      if (c > 0) h -= c / total * std::log(c / total);
    if (normalized) h = pairs.size() > 1 ? h / std::log(static_cast<double>(pairs.size())) : 1.0;
    sum += h;
    ++layers;
  }
  if (layers == 0) return std::nullopt;
  return sum / layers;
}

std::optional<double> RoutingFigures::overuse_rate(double threshold_times_uniform) const {
  int64_t experts = 0, over = 0;
  for (const auto& [layer, pairs] : expert_pairs) {
    double total = 0;
    for (double c : pairs) total += c;
    if (total <= 0) continue;
    const double threshold = threshold_times_uniform / static_cast<double>(pairs.size());
    for (double c : pairs) over += c / total > threshold ? 1 : 0;
    experts += static_cast<int64_t>(pairs.size());
  }
  if (experts == 0) return std::nullopt;
  return static_cast<double>(over) / static_cast<double>(experts);
}

void RoutingFigures::add(const RoutingFigures& o) {
  aux = weighted(aux, micro_batches, o.aux, o.micro_batches);
  constraint = weighted(constraint, micro_batches, o.constraint, o.micro_batches);
  boids_cohesion = weighted(boids_cohesion, micro_batches, o.boids_cohesion, o.micro_batches);
  boids_separation = weighted(boids_separation, micro_batches, o.boids_separation, o.micro_batches);
  boids_alignment = weighted(boids_alignment, micro_batches, o.boids_alignment, o.micro_batches);
  micro_batches += o.micro_batches;
  routed_pairs += o.routed_pairs;
  dropped_pairs += o.dropped_pairs;
  for (const auto& [layer, pairs] : o.expert_pairs) {
    auto& mine = expert_pairs[layer];
    if (mine.size() < pairs.size()) mine.resize(pairs.size(), 0.0);
    for (size_t e = 0; e < pairs.size(); ++e) mine[e] += pairs[e];
  }
}

nlohmann::json RoutingFigures::to_json() const {
  auto opt = [](const std::optional<double>& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); };
  nlohmann::json pairs = nlohmann::json::object();
  for (const auto& [layer, counts] : expert_pairs) pairs[std::to_string(layer)] = counts;
  return {{"aux", opt(aux)},
          {"constraint", opt(constraint)},
          {"boids_cohesion", opt(boids_cohesion)},
          {"boids_separation", opt(boids_separation)},
          {"boids_alignment", opt(boids_alignment)},
          {"routed_pairs", routed_pairs},
          {"dropped_pairs", dropped_pairs},
          {"micro_batches", micro_batches},
          {"expert_pairs", pairs}};
}

RoutingFigures RoutingFigures::from_json(const nlohmann::json& j) {
  try {
    RoutingFigures f;
    auto opt = [&](const char* key) {
      return j.at(key).is_null() ? std::optional<double>() : std::optional<double>(j.at(key).get<double>());
    };
    f.aux = opt("aux");
    if (j.contains("constraint")) f.constraint = opt("constraint");  // absent from states written before Select-MoE
    f.boids_cohesion = opt("boids_cohesion");
    f.boids_separation = opt("boids_separation");
    f.boids_alignment = opt("boids_alignment");
    f.routed_pairs = j.at("routed_pairs").get<double>();
    f.dropped_pairs = j.at("dropped_pairs").get<double>();
    f.micro_batches = j.at("micro_batches").get<int64_t>();
    for (const auto& [layer, counts] : j.at("expert_pairs").items())
      f.expert_pairs[std::stoi(layer)] = counts.get<std::vector<double>>();
    return f;
  } catch (const std::exception& e) {
    throw Error(std::string("malformed routing figures: ") + e.what());
  }
}

void RoutingTally::on_route(const RouterEvent& e) {
  // Experts only: the last trash_experts columns (Select-MoE's trash cans) are no expert's share.
  const int64_t E = e.router_logits.size(1) - e.trash_experts, k = e.topk_idx.size(1);
  const auto opts = at::TensorOptions().dtype(at::kDouble).device(e.topk_idx.device());
  const auto real = e.token_mask.defined() ? e.token_mask.to(e.topk_idx.device(), at::kBool).unsqueeze(1).expand({-1, k})
                                           : at::ones_like(e.topk_idx, opts.dtype(at::kBool));
  const auto weights = real.to(at::kDouble).reshape({-1});
  const auto idx = e.topk_idx.reshape({-1});
  const auto on_expert = e.trash_experts > 0 ? weights * idx.lt(E).to(at::kDouble) : weights;
  const auto counts = at::zeros({E}, opts).index_add_(0, idx.clamp_max(E - 1), on_expert);
  auto& layer = expert_pairs_[e.layer];
  layer = layer.defined() ? layer + counts : counts;
  accumulate(routed_, weights.sum());
  if (e.dropped.defined()) accumulate(dropped_, e.dropped.logical_and(real).sum());
}

void RoutingTally::read_into(RoutingFigures& figures) {
  RoutingFigures mine;
  for (const auto& [layer, counts] : expert_pairs_) {
    const auto host = counts.cpu().contiguous();
    mine.expert_pairs[layer].assign(host.data_ptr<double>(), host.data_ptr<double>() + host.numel());
  }
  if (routed_.defined()) mine.routed_pairs = routed_.item<double>();
  if (dropped_.defined()) mine.dropped_pairs = dropped_.item<double>();
  figures.add(mine);
  expert_pairs_.clear();
  routed_ = dropped_ = at::Tensor();
}

RouterObjective::RouterObjective(const TrainOptions& options, bool routers_train, std::optional<TrashConstraint> trash)
    : options_(options), want_aux_(routers_train || options.aux_loss_coef > 0), routers_train_(routers_train) {
  if (trash) trash_.emplace(*trash);
}

void RouterObjective::prepare(ForwardOptions& fo) {
  events_.clear();
  if (trash_) trash_->clear();  // nothing left over from a pass whose loss was not asked for
  fo.aux_loss = want_aux_;  // reported in every mode, added to the loss in normal and boids
  if (options_.router_mode == RouterMode::Boids) fo.final_hidden = true;
  fo.hooks.push_back(this);
}

void RouterObjective::on_route(const RouterEvent& e) {
  tally_.on_route(e);
  if (trash_) trash_->on_route(e);
  if (options_.router_mode == RouterMode::Boids && e.probs.defined()) events_.push_back(e);
}

at::Tensor RouterObjective::loss(const ForwardOutput& out, const at::Tensor& attention_mask, int64_t step,
                                 double weight) {
  ++micro_batches_;
  at::Tensor total;
  auto add = [&](const at::Tensor& term) { total = total.defined() ? total + term : term; };
  if (out.aux_loss.defined()) {
    accumulate(aux_sum_, out.aux_loss);
    if (options_.router_mode != RouterMode::None && options_.aux_loss_coef > 0)
      add(out.aux_loss.to(at::kFloat) * (options_.aux_loss_coef * weight));
  }
  if (trash_) {
    if (const auto constraint = trash_->take_loss(); constraint.defined()) {
      accumulate(constraint_sum_, constraint);
      const double w = trash_->settings().weight;
      if (routers_train_ && w > 0) add(constraint * (w * weight));
    }
  }
  if (options_.router_mode == RouterMode::Boids && !events_.empty()) {
    if (!out.final_hidden.defined()) throw Error("Boids needs the model's final hidden states");
    const auto hidden = out.final_hidden.reshape({-1, out.final_hidden.size(-1)}).to(at::kFloat);
    const at::Tensor real = attention_mask.defined() ? attention_mask.reshape({-1}).to(hidden.device(), at::kBool)
                                                     : at::Tensor();
    const auto z = real.defined() ? hidden.index({real}) : hidden;
    const double scale = boids_warmup(step, options_.steps, options_.boids.warmup_frac);
    // Every MoE layer, or the last one (the highest index).
    std::vector<const RouterEvent*> chosen;
    for (const auto& e : events_) chosen.push_back(&e);
    if (!options_.boids_all_layers) {
      chosen = {*std::max_element(chosen.begin(), chosen.end(),
                                  [](const RouterEvent* a, const RouterEvent* b) { return a->layer < b->layer; })};
    }
    const int64_t tokens = z.size(0);
    if (options_.boids.k_nn >= tokens) {
      throw Error("boids_k_nn " + std::to_string(options_.boids.k_nn) + " must be smaller than the " +
                  std::to_string(tokens) + " real tokens of a micro-batch");
    }
    at::Tensor coh, sep, ali, sum;
    for (const auto* e : chosen) {
      auto gates = boids_gates(e->probs, e->topk_idx);
      if (real.defined()) gates = gates.index({real});
      const auto terms = boids_loss(gates, z, options_.boids, scale);
      coh = coh.defined() ? coh + terms.cohesion : terms.cohesion;
      sep = sep.defined() ? sep + terms.separation : terms.separation;
      ali = ali.defined() ? ali + terms.alignment : terms.alignment;
      sum = sum.defined() ? sum + terms.total : terms.total;
    }
    const double layers = static_cast<double>(chosen.size());
    accumulate(cohesion_sum_, coh / layers);
    accumulate(separation_sum_, sep / layers);
    accumulate(alignment_sum_, ali / layers);
    ++boids_batches_;
    add(sum.to(at::kFloat) * (weight / layers));
  }
  events_.clear();
  return total;
}

RoutingFigures RouterObjective::take_figures() {
  RoutingFigures f;
  tally_.read_into(f);
  f.micro_batches = micro_batches_;
  f.aux = mean_of(aux_sum_, micro_batches_);
  f.constraint = mean_of(constraint_sum_, micro_batches_);
  f.boids_cohesion = mean_of(cohesion_sum_, boids_batches_);
  f.boids_separation = mean_of(separation_sum_, boids_batches_);
  f.boids_alignment = mean_of(alignment_sum_, boids_batches_);
  aux_sum_ = constraint_sum_ = cohesion_sum_ = separation_sum_ = alignment_sum_ = at::Tensor();
  micro_batches_ = boids_batches_ = 0;
  return f;
}

}  // namespace esft::train
