#include "esft/pipeline/data_selection.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "esft/error.h"
#include "esft/model/trash_constraint.h"

namespace esft::pipeline {

namespace {

// Sums, per row of the batch, each layer's mean over real tokens of 1 - trash mass.
class QualityHook : public RouterHook {
 public:
  explicit QualityHook(int64_t rows) : rows_(rows) {}
  void on_route(const RouterEvent& e) override {
    if (e.trash_experts == 0) return;
    const auto kept = 1.0 - trash_mass(e.probs, e.topk_idx, e.topk_weight, e.trash_experts, TrashRatio::Full);
    const auto real = e.token_mask.defined() ? e.token_mask.to(kept.device(), at::kFloat)
                                             : at::ones_like(kept);
    const auto per_row = (kept * real).view({rows_, -1}).sum(1) / real.view({rows_, -1}).sum(1).clamp_min(1);
    sum_ = sum_.defined() ? sum_ + per_row.to(at::kDouble) : per_row.to(at::kDouble);
    ++layers_;
  }
  at::Tensor mean() const { return sum_ / static_cast<double>(layers_); }

 private:
  int64_t rows_;
  at::Tensor sum_;
  int layers_ = 0;
};

}  // namespace

std::vector<double> score_quality(MoECausalLM& model, const std::vector<data::Sample>& samples, int32_t pad_id,
                                  const c10::Device& device, const QualityOptions& o,
                                  const std::function<void(size_t, size_t)>& progress) {
  if (!trash_constraint_of(model)) throw Error("the model has no trash experts to score data with (make one with esft-host convert)");
  if (o.batch_size < 1 || o.max_length < 1) throw Error("batch size and max length must be positive");
  for (const auto& s : samples)
    if (s.ids.empty()) throw Error(s.origin + ": a sample with no tokens cannot be scored");

  // Batches of similar lengths waste less padding; the scores go back to input order.
  std::vector<size_t> order(samples.size());
  std::iota(order.begin(), order.end(), 0);
  auto length = [&](size_t i) { return std::min<int64_t>(static_cast<int64_t>(samples[i].ids.size()), o.max_length); };
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return length(a) < length(b); });

  model.eval();
  at::NoGradGuard no_grad;
  std::vector<double> quality(samples.size(), 0.0);
  for (size_t start = 0; start < order.size(); start += static_cast<size_t>(o.batch_size)) {
    const size_t end = std::min(order.size(), start + static_cast<size_t>(o.batch_size));
    const int64_t rows = static_cast<int64_t>(end - start), T = length(order[end - 1]);
    auto ids = at::full({rows, T}, pad_id, at::kLong), mask = at::zeros({rows, T}, at::kLong);
    for (size_t r = start; r < end; ++r) {
      const auto& s = samples[order[r]];
      const int64_t n = length(order[r]);
      const auto row = static_cast<int64_t>(r - start);
      ids[row].narrow(0, 0, n).copy_(at::tensor(std::vector<int64_t>(s.ids.begin(), s.ids.begin() + n), at::kLong));
      mask[row].narrow(0, 0, n).fill_(1);
    }
    QualityHook hook(rows);
    ForwardOptions fo;
    fo.routing_only = true;
    fo.hooks.push_back(&hook);
    model.forward(ids.to(device), mask.to(device), fo);
    const auto q = hook.mean().cpu();
    for (int64_t r = 0; r < rows; ++r) {
      const double v = q[r].item<double>();
      const auto& s = samples[order[start + static_cast<size_t>(r)]];
      if (!std::isfinite(v)) throw Error(s.origin + ": its quality score is not a finite number (" + std::to_string(v) + ")");
      quality[order[start + static_cast<size_t>(r)]] = v;
    }
    if (progress) progress(end, order.size());
  }
  return quality;
}

std::vector<size_t> select_best(const std::vector<double>& quality, double fraction) {
  if (!(fraction > 0 && fraction <= 1)) throw Error("the fraction to keep must be in (0, 1], not " + std::to_string(fraction));
  std::vector<size_t> order(quality.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return quality[a] > quality[b]; });
  // floor(N * F), with room for the rounding of F (0.29 * 100 is 28.999999999999996 in binary).
  order.resize(static_cast<size_t>(std::floor(static_cast<double>(quality.size()) * fraction + 1e-9)));
  return order;
}

}  // namespace esft::pipeline
